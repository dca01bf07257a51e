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
    ``sample_stats`` (``lp`` = minus the potential energy, ``diverging``,
    ``acceptance_rate``, ``n_steps``, ``tree_depth``) and ``observed_data``.

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
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        "lp": -extra["potential_energy"],
        "diverging": extra["diverging"].astype(bool),
        "acceptance_rate": extra["accept_prob"],
        "n_steps": extra["num_steps"],
        "tree_depth": extra["tree_depth"],
    }
    observed = {k: np.asarray(v) for k, v in mcmc.observed.items()}
    return az.from_dict(
        posterior=samples,
        sample_stats=stats,
        observed_data=observed or None,
    )
