"""Plugin discovery through entry points, listing, failure isolation, distribution adapters."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import jax
import numpyro.distributions as dist
import pytest

import plait
from plait import PluginInfo, hookimpl
from plait import _plugins as plugins_module


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[importlib.metadata.EntryPoint]]:
    """Discovery sees only the entry points the test puts in the returned list."""
    fake: list[importlib.metadata.EntryPoint] = []

    monkeypatch.setattr(plugins_module, "_entry_points", lambda: list(fake))
    plugins_module.reset()
    yield fake
    plugins_module.reset()


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _entry_point(name: str, module: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=module, group="plait")


class Coin:
    """A foreign 'distribution' that plait does not know."""

    def __init__(self, p: float) -> None:
        self.p = p


def test_entry_point_plugins_are_discovered_and_listed(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    @hookimpl
    def plait_plugin_info() -> PluginInfo:
        return PluginInfo("fake", "1.2.3", ("thing",), "plait-fake")

    _module("plait_fake_plugin", plait_plugin_info=plait_plugin_info)
    fresh_plugins.append(_entry_point("fake", "plait_fake_plugin"))
    infos = {info.name: info for info in plait.plugins()}
    assert infos["fake"] == PluginInfo("fake", "1.2.3", ("thing",), "plait-fake")
    assert infos["core"].version == plait.__version__
    assert plait.plugins()[0].name == "core"


def test_broken_plugin_warns_once_and_the_rest_keeps_working(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    @hookimpl
    def plait_plugin_info() -> PluginInfo:
        return PluginInfo("good", "0.1", ("ok",))

    _module("plait_good_plugin", plait_plugin_info=plait_plugin_info)
    fresh_plugins.append(_entry_point("broken", "plait_module_that_does_not_exist"))
    fresh_plugins.append(_entry_point("good", "plait_good_plugin"))
    with pytest.warns(plait.PluginLoadWarning) as caught:
        names = [info.name for info in plait.plugins()]
    assert len(caught) == 1
    assert re.search(
        r"plait: plugin 'broken' failed to load: ModuleNotFoundError: .*continuing without it",
        str(caught[0].message),
    )
    assert names == ["core", "good"]
    assert "broken" in plait.failed_plugins()
    assert plait.sample("x", dist.Normal(0.0, 1.0), obs=1.0) == 1.0


def test_import_plait_loads_no_entry_point(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    assert plugins_module._manager is None
    plait.sample("x", dist.Normal(0.0, 1.0), obs=1.0)
    assert plugins_module._manager is None


def test_adapter_plugin_turns_a_foreign_object_into_a_distribution(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    @hookimpl
    def plait_adapt_distribution(fn: object) -> Any:
        return dist.Bernoulli(probs=fn.p) if isinstance(fn, Coin) else None

    _module("plait_coin_plugin", plait_adapt_distribution=plait_adapt_distribution)
    fresh_plugins.append(_entry_point("coin", "plait_coin_plugin"))
    draw = plait.sample("flip", Coin(0.3), rng_key=jax.random.key(0))
    assert draw == dist.Bernoulli(probs=0.3).sample(jax.random.key(0))


def test_foreign_object_no_plugin_adapts_is_an_error_naming_site_and_type(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    with pytest.raises(plait.SiteError) as error:
        plait.sample("flip", Coin(0.5), obs=1)
    message = str(error.value)
    assert "site 'flip'" in message
    assert "test_plugins.Coin" in message
    assert "plait_adapt_distribution" in message
    assert error.value.site == "flip"


def test_hand_registered_plugin_answers_hooks(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    class Mine:
        @hookimpl
        def plait_plugin_info(self) -> PluginInfo:
            return PluginInfo("mine", "9", ("x",))

    mine = Mine()
    assert plait.register(mine, name="mine") == "mine"
    assert plait.plugin_manager().has_plugin("mine")
    assert "mine" in [info.name for info in plait.plugins()]
    assert plait.unregister("mine") is mine
    assert "mine" not in [info.name for info in plait.plugins()]
    plait.register(mine, name="again")
    assert plait.unregister(mine) is mine  # by the object too
    assert not plait.plugin_manager().has_plugin("again")


def test_registering_twice_or_unregistering_an_unknown_plugin_is_an_error(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    class Mine:
        pass

    plait.register(Mine(), name="mine")
    with pytest.raises(ValueError, match="mine"):
        plait.register(Mine(), name="mine")
    plait.unregister(name="mine")
    with pytest.raises(ValueError, match=re.escape("no plait plugin is registered as 'mine'")):
        plait.unregister("mine")
    with pytest.raises(ValueError, match="not a registered plait plugin"):
        plait.unregister(Mine())
    with pytest.raises(ValueError, match="needs the plugin or its name"):
        plait.unregister()


def test_plugin_manager_is_plaits_pluggy_manager(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    pm = plait.plugin_manager()
    assert pm is plait.plugin_manager() and pm.project_name == "plait"
    assert [name for name, _ in pm.list_name_plugin()] == ["core"]


class _Answers:
    """Answers every consumer hook with a recognisable value."""

    @hookimpl
    def plait_log_density(self, model: Any, model_args: Any, model_kwargs: Any, params: Any) -> Any:
        return jax.numpy.asarray(float(model_args[0])), {}

    @hookimpl
    def plait_infer_discrete(
        self, model: Any, model_args: Any, model_kwargs: Any, temperature: int, rng_key: Any
    ) -> Any:
        return {
            "t": plait.Message(type="sample", name="t", value=temperature),
            "z": plait.Message(type="sample", name="z", value=1),
        }

    @hookimpl
    def plait_adapt_distribution(self, fn: object) -> Any:
        return dist.Bernoulli(probs=fn.p) if isinstance(fn, Coin) else None


def test_typed_hook_callers_return_the_answers_of_entry_point_plugins(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    answers = _Answers()
    _module(
        "plait_answers_plugin",
        plait_log_density=answers.plait_log_density,
        plait_infer_discrete=answers.plait_infer_discrete,
        plait_adapt_distribution=answers.plait_adapt_distribution,
    )
    fresh_plugins.append(_entry_point("answers", "plait_answers_plugin"))
    value, trace = plait.hooks.log_density(lambda: None, (7,), {}, {})  # type: ignore[misc]
    assert float(value) == 7.0 and trace == {}
    drawn = plait.hooks.infer_discrete(lambda: None, (), {}, temperature=0)
    assert drawn is not None and drawn["t"].value == 0 and drawn["z"].value == 1
    adapted = plait.hooks.adapt_distribution(Coin(0.2))
    assert isinstance(adapted, dist.BernoulliProbs) and float(adapted.probs) == 0.2
    assert plait.hooks.adapt_distribution(object()) is None


def test_typed_hook_callers_return_the_answers_of_registered_plugins(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    assert plait.hooks.infer_discrete(lambda: None, (), {}) is None
    assert plait.hooks.log_density(lambda: None, (), {}, {}) is None
    plait.register(_Answers(), name="answers")
    drawn = plait.hooks.infer_discrete(lambda: None, (), {}, temperature=1)
    assert drawn is not None and drawn["t"].value == 1
    value, _ = plait.hooks.log_density(lambda: None, (3,), {}, {})  # type: ignore[misc]
    assert float(value) == 3.0
    assert plait.sample("flip", Coin(1.0), rng_key=jax.random.key(0)) == 1


def test_plugin_can_add_hook_specs_that_other_plugins_implement(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    class Specs:
        @plait.hookspec(firstresult=True)
        def plait_greeting(self) -> str:  # type: ignore[empty-body]
            """A hook a plugin declares for other plugins."""

    @hookimpl
    def plait_addhooks(pluginmanager: Any) -> None:
        pluginmanager.add_hookspecs(Specs)

    @hookimpl
    def plait_greeting() -> str:
        return "hello"

    _module("plait_spec_plugin", plait_addhooks=plait_addhooks)
    _module("plait_impl_plugin", plait_greeting=plait_greeting)
    fresh_plugins.append(_entry_point("spec", "plait_spec_plugin"))
    fresh_plugins.append(_entry_point("impl", "plait_impl_plugin"))
    assert plait.plugin_manager().hook.plait_greeting() == "hello"


def test_registered_plugin_can_add_hook_specs_and_late_plugins_implement_them(
    fresh_plugins: list[importlib.metadata.EntryPoint],
) -> None:
    class Specs:
        @plait.hookspec(firstresult=True)
        def plait_farewell(self) -> str:  # type: ignore[empty-body]
            """A hook a hand-registered plugin declares."""

    class Declares:
        @hookimpl
        def plait_addhooks(self, pluginmanager: Any) -> None:
            pluginmanager.add_hookspecs(Specs)

    class Implements:
        @hookimpl
        def plait_farewell(self) -> str:
            return "bye"

    plait.register(Declares(), name="declares")
    plait.register(Implements(), name="implements")
    assert plait.plugin_manager().hook.plait_farewell() == "bye"
