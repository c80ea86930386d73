"""The benchmark's critical path: the dependency list is whole, acyclic, and as long as argued."""

from __future__ import annotations

import pytest

from benchmarks.critical_path import Step, critical_path, scenario_steps


def test_the_seed_scenario_needs_seven_dependent_round_trips() -> None:
    path = critical_path(scenario_steps())
    # account -> create user -> key (or attach) -> allowed check -> denied check -> delete key
    # (or detach) -> delete user (or policy)
    assert path.depth == 7
    assert path.chain[0] == "sts:GetCallerIdentity"
    assert path.chain[-1].startswith(("iam:DeleteUser", "iam:DeletePolicy"))
    names = [step.name for step in scenario_steps()]
    assert len(names) == len(set(names)) == path.calls


def test_every_step_says_why_it_waits() -> None:
    assert all(step.why for step in scenario_steps())


def test_undeclared_steps_and_cycles_are_refused() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        critical_path([Step("a", ("b",), "")])
    with pytest.raises(ValueError, match="cycle"):
        critical_path([Step("a", ("b",), ""), Step("b", ("a",), "")])
