"""What README.md says of the code, checked against the code, so that it stays true."""

from __future__ import annotations

import json
import re
from pathlib import Path

from job.config import MAX_PREFIX_LENGTH
from job.permissions import runner_policy

# Lines folded into one: a phrase may be wrapped anywhere.
README = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())


def _iam_length(prefix: str) -> int:
    # IAM does not count white space against a policy's size quota.
    return len(re.sub(r"\s", "", json.dumps(runner_policy(prefix))))


def test_the_runner_policy_size_readme_gives() -> None:
    shortest, longest = _iam_length("job"), _iam_length("a" * MAX_PREFIX_LENGTH)
    assert f"{shortest:,} for the prefix `job`" in README
    assert f"{longest:,} for the longest prefix" in README
    stated = re.search(r"The document is about ([0-9,]+) characters", README)
    assert stated is not None
    assert abs(int(stated[1].replace(",", "")) - shortest) <= 100
    # The advice that follows holds: within a managed policy's quota, near the inline one.
    assert longest < 6_144
    assert "attach it as a managed policy" in README


def _module_map() -> str:
    """The code block under "## Development" that names every module."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("## Development", 1)[1]
    return section.split("```", 2)[1]


def test_the_module_map_names_every_module() -> None:
    """A newcomer reads the map to find their way: a module it does not name is one they miss."""
    package = Path(__file__).parents[2] / "job"
    names = _module_map()
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.glob("*.py")) + sorted(package.glob("*/*.py"))
        if path.name not in ("__init__.py", "__main__.py")
        and path.parent.name != "migrations"
        and not re.search(rf"\b{re.escape(path.name)}", names)
    ]
    assert missing == []


def test_the_module_map_names_no_module_that_is_gone() -> None:
    package = Path(__file__).parents[2] / "job"
    existing = {path.name for path in package.rglob("*.py")}
    named = set(re.findall(r"\b([a-z_]+\.py)\b", _module_map().split("tests/", 1)[0]))
    assert named - existing == set()
