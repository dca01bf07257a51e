"""Export an MCMC run to ArviZ (``pip install plait-infer[arviz]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from plait.errors import PlaitError

if TYPE_CHECKING:
    from plait.infer._mcmc import MCMC

__all__ = ["to_arviz"]


def to_arviz(mcmc: MCMC) -> Any:
    """The run of ``mcmc`` as an ``arviz.InferenceData``.

    Groups: ``posterior`` (every latent and deterministic site, ``(chain, draw, ...)``),
    ``sample_stats`` (of the collected fields: ``lp`` = minus the potential energy,
    ``diverging``, ``acceptance_rate``, ``n_steps``, ``step_size``, and any other
    extra field under its own name) and ``observed_data``.

    Raises:
        PlaitError: ArviZ is not installed.
    """
    try:
        import arviz as az
    except ImportError as error:
        raise PlaitError(
            "MCMC.to_arviz() needs ArviZ: pip install 'plait-infer[arviz]' (or arviz)."
        ) from error
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    renames = {
        "potential_energy": "lp",
        "accept_prob": "acceptance_rate",
        "num_steps": "n_steps",
        "adapt_state.step_size": "step_size",
    }
    stats = {}
    for name, value in mcmc.get_extra_fields(group_by_chain=True).items():
        value = np.asarray(value)
        if name == "potential_energy":
            value = -value
        elif name == "diverging":
            value = value.astype(bool)
        stats[renames.get(name, name)] = value
    observed = {k: np.asarray(v) for k, v in mcmc.observed_data().items()}
    return az.from_dict(
        posterior=samples,
        sample_stats=stats or None,
        observed_data=observed or None,
    )
