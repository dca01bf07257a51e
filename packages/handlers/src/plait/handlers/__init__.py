"""plait-handlers: NumPyro's effect handlers, typed and stateless per call.

Example:
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.handlers import condition, seed, trace
    >>> def model() -> None:
    ...     sample("x", dist.Normal(0.0, 1.0))
    >>> tr = trace(seed(condition(model, data={"x": 0.5}), rng_seed=0)).get_trace()
    >>> float(tr["x"].value)
    0.5
"""

from plait.handlers._block import block as block
from plait.handlers._condition import condition as condition
from plait.handlers._do import do as do
from plait.handlers._infer_config import infer_config as infer_config
from plait.handlers._lift import lift as lift
from plait.handlers._mask import mask as mask
from plait.handlers._reparam import LocScaleReparam as LocScaleReparam
from plait.handlers._reparam import Reparam as Reparam
from plait.handlers._reparam import reparam as reparam
from plait.handlers._replay import replay as replay
from plait.handlers._scale import scale as scale
from plait.handlers._scope import scope as scope
from plait.handlers._seed import seed as seed
from plait.handlers._shard import AxisName as AxisName
from plait.handlers._shard import shard as shard
from plait.handlers._substitute import substitute as substitute
from plait.handlers._trace import trace as trace
from plait.handlers._uncondition import uncondition as uncondition

__all__ = [
    "AxisName",
    "LocScaleReparam",
    "Reparam",
    "block",
    "condition",
    "do",
    "infer_config",
    "lift",
    "mask",
    "reparam",
    "replay",
    "scale",
    "scope",
    "seed",
    "shard",
    "substitute",
    "trace",
    "uncondition",
]
