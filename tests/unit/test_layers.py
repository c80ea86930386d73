"""Which parts of the job may reach which: every import of the package (at module level and inside
functions, under TYPE_CHECKING too), followed from module to module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "job"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The job's own modules `module` names in any import statement."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from job.aws import probes` imports job.aws.probes; `from job.x import name`, job.x.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in MODULES}
    return found


def _reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for imported in _imports(todo.pop()) - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def test_the_graph_is_read_from_every_module() -> None:
    assert {"job.cli", "job.phases.verify", "job.aws.iam.users", "job.naming"} <= set(MODULES)
    assert "job.phases.common" in _imports("job.phases.verify")
    assert "job.aws.session" in _reachable("job.phases.verify")


@pytest.mark.parametrize(
    "module", ["job.scenario", "job.scenario_file", "job.report", "job.naming", "job.probes"]
)
def test_naming_and_scenarios_reach_no_aws_client(module: str) -> None:
    """A scenario is compiled, shown and reported from strings: no AWS layer behind it."""
    assert not {name for name in _reachable(module) if name.startswith("job.aws")}


def test_verify_does_not_reach_teardown() -> None:
    """Verify deletes its own keys with the phases' common write-ahead, not teardown's code."""
    assert "job.phases.teardown" not in _reachable("job.phases.verify")
