"""Policy files: a scenario's document kept in a file of its own, named beside the key it stands
for (`policy_file: policies/ingest.json` instead of `policy:`; likewise `boundary_file`,
`session_policy_file`, and a bucket's `policy_file`), as an IAM policy is exported from the
console or the CLI, in JSON (or YAML).

A file is read once, with the scenario that names it, and its text is stored with the run beside
the scenario's: a later phase (verify, teardown, a resume, a janitor, on any machine) uses the
stored text, never the file, which may have changed or be absent there. This module finds the
files a scenario names and reads them; job.scenario_file parses and checks what they hold as if
it were written inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.errors import BadInput

FILE_SUFFIX = "_file"
# The keys that hold a document, by section: each may be written as KEY or as KEY_file.
DOCUMENT_KEYS = {
    "buckets": ("policy",),
    "users": ("policy", "boundary"),
    "groups": ("policy",),
    "roles": ("policy", "boundary", "session_policy"),
}
# IAM takes 6,144 characters without whitespace in a managed policy and S3 20 KB in a bucket
# policy; a file as exported is indented, so a few times that. The cap is checked before the file
# is parsed, as the scenario's is (job.scenario_file.MAX_SCENARIO_BYTES), and the scenario with
# all its files is held to the scenario's cap too: it is all stored with the run.
MAX_POLICY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class FilePlace:
    """Where a scenario names a file: `section.name.key_file: path`."""

    section: str
    name: str
    key: str
    path: str

    @property
    def inline(self) -> str:
        """The place of the document once the file's is put there: `users.ingest.policy`."""
        return f"{self.section}.{self.name}.{self.key}"

    @property
    def written(self) -> str:
        """The place as written, for error messages: `users.ingest.policy_file`."""
        return f"{self.inline}{FILE_SUFFIX}"


def file_places(document: Mapping[str, Any]) -> list[FilePlace]:
    """Every file a scenario (one that passed the schema) names, in the order written."""
    places = []
    for section, keys in DOCUMENT_KEYS.items():
        for name, entry in (document.get(section) or {}).items():
            for key in keys:
                path = (entry or {}).get(f"{key}{FILE_SUFFIX}")
                if path is not None:
                    places.append(FilePlace(section, name, key, path))
    return places


def read_capped(path: Path, cap: int) -> bytes:
    """At most `cap` + 1 bytes of the file: one byte over the cap is enough to refuse it, and a
    huge file (or /dev/zero) is never read whole. OSError when it cannot be read."""
    with path.open("rb") as file:
        return file.read(cap + 1)


def policy_file_too_big() -> str:
    return (
        f"larger than {MAX_POLICY_FILE_BYTES:,} bytes (64 KiB), the most a policy file may be; "
        "IAM takes at most 6,144 characters in a managed policy, S3 20 KB in a bucket policy"
    )


def read_policy_files(scenario_path: Path, document: Mapping[str, Any]) -> dict[str, str]:
    """The text of every file the scenario at `scenario_path` names, by its path as written
    (relative to the scenario's directory). BadInput naming the place when one cannot be."""
    texts: dict[str, str] = {}
    for place in file_places(document):
        if place.path in texts:  # two places may share a file: it is one text
            continue
        texts[place.path] = _read(scenario_path.parent, place)
    return texts


def _read(directory: Path, place: FilePlace) -> str:
    def refused(problem: str) -> BadInput:
        return BadInput(f"{place.written}: {place.path}: {problem}")

    if Path(place.path).is_absolute():
        # The text is stored with the run either way; but a scenario naming /home/me/x.json
        # validates on no other machine (in CI, for a colleague): its files go with it.
        raise refused(
            "an absolute path; write it relative to the scenario file's directory, so that the "
            "scenario and its policy files move together"
        )
    try:
        data = read_capped(directory / place.path, MAX_POLICY_FILE_BYTES)
    except OSError as error:
        raise refused(f"cannot read it: {error.strerror or error}") from None
    except ValueError as error:  # a NUL in the path: no file is named so
        raise refused(f"cannot read it: {error}") from None
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise refused(policy_file_too_big())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise refused("not UTF-8 text; a policy file is JSON or YAML") from None


def placed_in_file(message: str, places: list[FilePlace]) -> str:
    """An error found in a file's document, said at the place the file was named and then its
    place in the file: `users.ingest.policy.Statement[0].Action: ...` reads
    `users.ingest.policy_file: policies/ingest.json: Statement[0].Action: ...`."""
    for place in places:
        rest = message.removeprefix(place.inline)
        if rest == message or not rest.startswith((".", "[", ":")):
            continue
        return f"{place.written}: {place.path}: {rest.removeprefix('.').removeprefix(': ')}"
    return message
