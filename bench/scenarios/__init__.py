"""The scenario registry: every module in this package that defines `SCENARIOS` is found.

Add a scenario by adding a module with `SCENARIOS = (Scenario(...), ...)`; nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence

from bench.scenarios.base import Scenario

#: Modules of this package that hold shared code, not scenarios.
_NOT_SCENARIO_MODULES = frozenset({"base"})


class UnknownScenarioError(LookupError):
    """Raised when `--scenario` names a scenario that does not exist."""


def build_registry(scenarios: Iterable[Scenario]) -> dict[str, Scenario]:
    """Index scenarios by name, refusing duplicates.

    Args:
        scenarios: In the order they should run.

    Returns:
        An insertion-ordered mapping name -> scenario.

    Raises:
        ValueError: When two scenarios share a name.
    """
    registry: dict[str, Scenario] = {}
    for scenario in scenarios:
        if not isinstance(scenario, Scenario):
            raise TypeError(f"not a Scenario: {scenario!r}")
        if scenario.name in registry:
            raise ValueError(f"duplicate scenario name: {scenario.name}")
        registry[scenario.name] = scenario
    return registry


def discover() -> dict[str, Scenario]:
    """Import every scenario module of this package and collect their `SCENARIOS`.

    Modules are visited in name order so runs are repeatable.
    """
    found: list[Scenario] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_SCENARIO_MODULES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "SCENARIOS", ()))
    return build_registry(found)


def select(registry: dict[str, Scenario], names: Sequence[str] | None) -> list[Scenario]:
    """The scenarios to run: the named ones in the given order, or all of them.

    Raises:
        UnknownScenarioError: When a name is not registered (the message lists valid ones).
    """
    if not names:
        return list(registry.values())
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise UnknownScenarioError(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(registry)}"
        )
    # Keep the first occurrence only: `--scenario a --scenario a` measures once.
    return [registry[name] for name in dict.fromkeys(names)]
