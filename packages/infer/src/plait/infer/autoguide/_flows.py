"""Normalising-flow guides: a standard Normal pushed through autoregressive flows of
``numpyro.distributions.flows`` (IAF, BNAF), their networks from ``numpyro.nn``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax.example_libraries import stax
from numpyro.distributions.flows import (
    BlockNeuralAutoregressiveTransform,
    InverseAutoregressiveTransform,
)
from numpyro.distributions.transforms import PermuteTransform, Transform
from numpyro.nn.auto_reg_nn import AutoregressiveNN
from numpyro.nn.block_neural_arn import BlockNeuralAutoregressiveNN

from plait.errors import PlaitError
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._continuous import AutoContinuous

__all__ = ["AutoBNAFNormal", "AutoIAFNormal"]


def _module(name: str, nn: Any, input_shape: tuple[int, ...]) -> Callable[..., Any]:
    """``plait.nn.module`` (NumPyro's ``numpyro.module``): the network as one param."""
    try:
        from plait.nn import module
    except ImportError as error:
        raise PlaitError(
            "The flow autoguides hold their networks with plait.nn.module, but plait-nn is "
            f"not installed ({error}). Install it: pip install plait-nn."
        ) from error
    return module(name, nn, input_shape)


class _AutoFlow(AutoContinuous):
    def _flows(self) -> list[Transform]:
        raise NotImplementedError

    def _get_posterior(self) -> Any:
        if self.latent_dim == 1:
            raise ValueError("latent dim = 1. Consider using AutoDiagonalNormal instead")
        return dist.TransformedDistribution(self.get_base_dist(), self._flows())

    def get_base_dist(self) -> Any:
        return dist.Normal(jnp.zeros(self.latent_dim), 1).to_event(1)

    def _reverse(self) -> Transform:
        return PermuteTransform(jnp.arange(self.latent_dim)[::-1])


class AutoIAFNormal(_AutoFlow):
    """A standard Normal through ``num_flows`` inverse autoregressive flows (Kingma et
    al. 2016; NumPyro's ``AutoIAFNormal``), with reversing permutations between them.
    Each flow's ``AutoregressiveNN`` is the param ``{prefix}_arn__{i}$params``.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        num_flows: the number of flows.
        hidden_dims: the hidden layer widths (default ``[latent_dim, latent_dim]``).
        skip_connections: add skip connections from the input to each flow's output.
        nonlinearity: the stax nonlinearity of the networks.

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoIAFNormal
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        >>> tr = trace(seed(AutoIAFNormal(model, num_flows=2), 0)).get_trace()
        >>> sorted(n for n, s in tr.items() if s.type == "param")
        ['auto_arn__0$params', 'auto_arn__1$params']
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        num_flows: int = 3,
        hidden_dims: Sequence[int] | None = None,
        skip_connections: bool = False,
        nonlinearity: Any = stax.Elu,
    ) -> None:
        self.num_flows = num_flows
        self._hidden_dims = hidden_dims
        self._skip_connections = skip_connections
        self._nonlinearity = nonlinearity
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _flows(self) -> list[Transform]:
        d = self.latent_dim
        hidden = [d, d] if self._hidden_dims is None else list(self._hidden_dims)
        flows: list[Transform] = []
        for i in range(self.num_flows):
            if i > 0:
                flows.append(self._reverse())
            arn = AutoregressiveNN(
                d,
                hidden,
                permutation=jnp.arange(d),
                skip_connections=self._skip_connections,
                nonlinearity=self._nonlinearity,
            )
            flows.append(
                InverseAutoregressiveTransform(_module(f"{self.prefix}_arn__{i}", arn, (d,)))
            )
        return flows


class AutoBNAFNormal(_AutoFlow):
    """A standard Normal through ``num_flows`` block neural autoregressive flows (De Cao
    et al. 2019; NumPyro's ``AutoBNAFNormal``), with reversing permutations between them
    and gated residuals on all but the last. Each flow's network is the param
    ``{prefix}_arn__{i}$params``.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        num_flows: the number of flows.
        hidden_factors: hidden layer ``i`` has ``hidden_factors[i]`` units per input dim.

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoBNAFNormal
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        >>> tr = trace(seed(AutoBNAFNormal(model, hidden_factors=[4]), 0)).get_trace()
        >>> tr["x"].value.shape
        (2,)
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        num_flows: int = 1,
        hidden_factors: Sequence[int] = (8, 8),
    ) -> None:
        self.num_flows = num_flows
        self._hidden_factors = list(hidden_factors)
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _flows(self) -> list[Transform]:
        d = self.latent_dim
        flows: list[Transform] = []
        for i in range(self.num_flows):
            if i > 0:
                flows.append(self._reverse())
            residual = "gated" if i < self.num_flows - 1 else None
            arn = BlockNeuralAutoregressiveNN(d, self._hidden_factors, residual)
            flows.append(
                BlockNeuralAutoregressiveTransform(_module(f"{self.prefix}_arn__{i}", arn, (d,)))
            )
        return flows
