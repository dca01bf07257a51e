"""Forward-filter backward-sample (FFBS) on a chain, sequential or O(log T) depth.

Both backward passes run on the forward messages ``l_t`` of `chain_filter`:

    x_T ~ softmax(l_T),   x_t | x_{t+1} ~ softmax_i(l_t(i) + steps[t, i, x_{t+1}])

(Frühwirth-Schnatter 1994; Chib 1996). A draw uses the Gumbel-max trick with one
noise vector ``g_t`` per state ``x_t``: ``x_t = argmax_i(l_t(i) + steps[t, i,
x_{t+1}] + g_t(i))``. Sharing ``g_t`` between the ``S`` possible values of
``x_{t+1}`` is exact, since a path takes one of them and ``g_t`` is independent of
``x_{t+1}`` (a function of ``g_{t+1}, ..., g_T`` only). With the shared noise each
step is a lookup table ``x_t = f_t[x_{t+1}]``, so the whole pass is a composition
of tables: a reverse ``lax.scan`` ("sequential", one gather a step) or a reverse
``lax.associative_scan`` of table compositions ("associative", depth O(log T)).
Both give the same path for the same key. Viterbi (`chain_mode`) is the same pass
with zero noise on max-product messages.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from plait.kernels._chain import chain_messages
from plait.kernels._types import ChainPath, Steps, Strategy

__all__ = ["chain_sample"]


def chain_sample(
    key: PRNGKeyArray,
    init: Float[ArrayLike, "*#batch state"],
    steps: Steps,
    *,
    strategy: Strategy = "auto",
) -> ChainPath:
    """Draws one path ``x_0, ..., x_T`` from a chain's posterior (FFBS).

    The posterior is ``p(x_{0:T}) ∝ exp(init[x_0] + Σ_t steps[t, x_t, x_{t+1}])``:
    filtering forward (`chain_filter`), then sampling backward
    ``x_t | x_{t+1} ~ softmax_i(l_t(i) + steps[t, i, x_{t+1}])``. Exact for any
    ``T``; a state of weight 0 (``-inf``) is never drawn. For several draws,
    ``jax.vmap`` over keys.

    Args:
        key: a PRNG key (typed or raw).
        init: ``init[..., x_0]``, log-weights of the first state.
        steps: ``steps[..., t, x_t, x_{t+1}]``, log-weights of the ``T`` steps,
            or `FactoredSteps`.
        strategy: static. ``"sequential"``: sequential filter and backward scan;
            ``"associative"``: both passes with O(log T) depth; ``"auto"``:
            `auto_strategy` with ``prefix=True``. ``"tree"`` is refused (it has
            no prefix messages).

    Returns:
        ``ChainPath(initial_state, states, log_normalizer)`` with int32 states.

    Raises:
        ValueError: for inconsistent shapes, ``strategy="tree"`` or an unknown
            strategy.
        TypeError: for non-floating or mixed dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from plait.kernels import chain_sample
        >>> init = jnp.log(jnp.array([0.0, 1.0]))  # start in state 1
        >>> stay = jnp.log(jnp.eye(2))  # switching is impossible
        >>> path = chain_sample(jax.random.key(0), init, jnp.stack([stay] * 4))
        >>> path.initial_state, path.states
        (Array(1, dtype=int32), Array([1, 1, 1, 1], dtype=int32))
    """
    chain, total, previous, last, resolved = chain_messages(init, steps, "log", strategy)
    shape = (*previous.shape[:-2], chain.num_steps + 1, chain.num_states)
    noise = jax.random.gumbel(key, shape, previous.dtype)
    initial, states = backtrack(
        previous + noise[..., :-1, :], last + noise[..., -1, :], chain.transition, resolved
    )
    return ChainPath(initial, states, total)


def backtrack(
    previous: Array, last: Array, transition: Array, strategy: str
) -> tuple[Array, Array]:
    """The backward pass shared by sampling and Viterbi.

    ``x_T = argmax(last)``, ``x_t = argmax_i(previous[t, i] + transition[t, i,
    x_{t+1}])``. ``previous`` ``(*batch, T, S)`` and ``last`` ``(*batch, S)`` carry
    any noise already; ``transition`` is ``(*batch, T or 1, S, S)`` (a factored
    emission is constant over ``i`` and does not change the argmax).

    Returns:
        ``(x_0, x_{1:T})`` as int32.
    """
    final = jnp.argmax(last, axis=-1).astype(jnp.int32)
    num_steps = previous.shape[-2]
    if num_steps == 0:
        return final, jnp.zeros((*final.shape, 0), jnp.int32)
    if strategy == "sequential":

        def pick(previous_t: Array, transition_t: Array, state: Array) -> Array:
            index = state[..., None, None]
            column = jnp.take_along_axis(transition_t, index, axis=-1)[..., 0]
            return jnp.argmax(previous_t + column, axis=-1).astype(jnp.int32)

        xs = jnp.moveaxis(previous, -2, 0)
        if transition.shape[-3] != num_steps:  # one transition shared by every step
            shared = transition[..., 0, :, :]

            def shared_step(state: Array, previous_t: Array) -> tuple[Array, Array]:
                new = pick(previous_t, shared, state)
                return new, new

            _, earlier = lax.scan(shared_step, final, xs, reverse=True)
        else:

            def step(state: Array, xs_t: tuple[Array, Array]) -> tuple[Array, Array]:
                new = pick(xs_t[0], xs_t[1], state)
                return new, new

            _, earlier = lax.scan(step, final, (xs, jnp.moveaxis(transition, -3, 0)), reverse=True)
        earlier = jnp.moveaxis(earlier, 0, -1)  # x_0, ..., x_{T-1}
    else:
        # f_t[j] = argmax_i(previous[t, i] + transition[t, i, j]), every j at once.
        scores = previous[..., :, :, None] + transition
        tables = jnp.argmax(scores, axis=-2).astype(jnp.int32)
        # g_t = f_t ∘ f_{t+1} ∘ ... ∘ f_{T-1}. With reverse=True the scan calls
        # fn(later, earlier), and (earlier ∘ later)[j] = earlier[later[j]].
        suffixes = lax.associative_scan(
            lambda later, earlier: jnp.take_along_axis(earlier, later, axis=-1),
            tables,
            reverse=True,
            axis=tables.ndim - 2,
        )
        earlier = jnp.take_along_axis(suffixes, final[..., None, None], axis=-1)[..., 0]
    states = jnp.concatenate([earlier[..., 1:], final[..., None]], axis=-1)
    return earlier[..., 0], states
