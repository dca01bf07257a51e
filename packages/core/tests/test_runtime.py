"""The handler stack: NumPyro's order, the three forms of a messenger, isolation."""

from __future__ import annotations

import re
from typing import Any

import jax
import numpyro.distributions as dist
import numpyro.primitives
import pytest

import plait
from plait import Message, Messenger, apply_stack, current_stack


class Recorder(Messenger[..., Any]):
    """Appends (event, name) pairs to a shared log; optionally stops messages."""

    def __init__(self, label: str, log: list[tuple[str, str]], stop: bool = False) -> None:
        super().__init__()
        self.label, self.log, self.stop = label, log, stop

    def process_message(self, msg: Message) -> None:
        self.log.append(("process", self.label))
        if self.stop:
            msg.stop = True

    def postprocess_message(self, msg: Message) -> None:
        self.log.append(("post", self.label))


def test_process_runs_innermost_first_and_postprocess_outermost_first() -> None:
    log: list[tuple[str, str]] = []
    with Recorder("outer", log), Recorder("inner", log):
        plait.deterministic("d", 1.0)
    assert log == [
        ("process", "inner"),
        ("process", "outer"),
        ("post", "outer"),
        ("post", "inner"),
    ]


def test_stop_hides_message_from_outer_handlers_and_postprocess_starts_at_stopper() -> None:
    log: list[tuple[str, str]] = []
    with Recorder("outer", log), Recorder("middle", log, stop=True), Recorder("inner", log):
        msg = apply_stack(Message(type="deterministic", name="d", value=1.0))
    assert log == [
        ("process", "inner"),
        ("process", "middle"),
        ("post", "middle"),
        ("post", "inner"),
    ]
    assert [h.label for h in msg.handled_by] == ["middle", "inner"]  # type: ignore[attr-defined]


def test_handler_leaves_stack_on_exception() -> None:
    log: list[tuple[str, str]] = []
    with pytest.raises(RuntimeError), Recorder("a", log):
        Recorder("b", log).__enter__()  # never exited on purpose
        raise RuntimeError("boom")
    assert current_stack() == ()


def test_wrapper_and_decorator_forms_run_under_the_handler() -> None:
    log: list[tuple[str, str]] = []

    def model(x: float) -> float:
        return plait.deterministic("d", x)

    assert Recorder("w", log)(model) is not None
    wrapped = Recorder("w", log)
    wrapped.fn = model
    assert wrapped(2.0) == 2.0
    decorator = Recorder("dec", log)
    decorated = decorator(model)  # decorator form: a single callable argument
    assert decorated is decorator
    assert decorated(3.0) == 3.0
    assert ("process", "dec") in log


def test_messenger_rejects_non_callable_with_numpyros_value_error() -> None:
    with pytest.raises(plait.HandlerError, match=re.escape("Messenger() wraps a model function")):
        Messenger(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="to be a Python callable object"):
        numpyro.primitives.Messenger(3)


def test_per_type_methods_are_dispatched() -> None:
    seen: list[str] = []

    class OnlySamples(Messenger[..., Any]):
        def process_sample(self, msg: Message) -> None:
            seen.append(f"sample:{msg.name}")

        def postprocess_deterministic(self, msg: Message) -> None:
            seen.append(f"post-det:{msg.name}")

    with OnlySamples():
        plait.sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        plait.deterministic("d", 1.0)
        plait.param("p", 1.0)
    assert seen == ["sample:x", "post-det:d"]


def test_empty_stack_primitives_are_passthrough() -> None:
    assert plait.sample("x", dist.Normal(0.0, 1.0), obs=2.0) == 2.0
    assert plait.param("p", 1.5) == 1.5
    assert plait.deterministic("d", 4.0) == 4.0
    assert plait.subsample(5.0, event_dim=0) == 5.0
    assert plait.mutable("m", {"a": 1}) == {"a": 1}
    assert plait.get_mask() is None
    with pytest.warns(UserWarning, match="outside of a seed handler"):
        assert plait.prng_key() is None
    draw = plait.sample("x", dist.Normal(0.0, 1.0), rng_key=jax.random.key(0))
    assert draw == dist.Normal(0.0, 1.0).sample(jax.random.key(0))


def test_sample_without_key_names_the_site() -> None:
    with pytest.raises(plait.SiteError, match=re.escape("site 'z' needs a random key")):
        plait.sample("z", dist.Normal(0.0, 1.0))
    with (
        pytest.raises(plait.SiteError, match=re.escape("site 'z' needs a random key")),
        Recorder("r", []),
    ):
        plait.sample("z", dist.Normal(0.0, 1.0))


def test_callable_param_init_without_seed_is_a_clear_error() -> None:
    with pytest.raises(plait.SiteError, match=re.escape("param 'w' has a callable init_value")):
        plait.param("w", lambda key: jax.random.normal(key))
