"""Policy files (policy_file, boundary_file, session_policy_file, a bucket's policy_file): each
compiles to what the document written inline would; each is read with the scenario, under its
guards, and refused in one line naming the place and the file; once read, its text travels with
the scenario's (ScenarioSource.files) and nothing reads the file again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from job.errors import BadInput
from job.naming import Naming
from job.policy_files import MAX_POLICY_FILE_BYTES
from job.scenario_file import (
    MAX_SCENARIO_BYTES,
    ScenarioSource,
    compile_source,
    read_source,
    validate,
)

NAMING = Naming("job", "abcdefghij", "123456789012", "aws")
READ_DATA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket:data/*"}],
}
BUCKET_POLICY = {
    "Version": "2012-10-17",
    "Statement": {
        "Sid": "NotTheAnalyst",
        "Effect": "Deny",
        "Principal": {"AWS": "role:analyst"},
        "Action": "s3:GetObject",
        "Resource": "bucket:data/*",
    },
}
BOUNDARY = {
    "Version": "2012-10-17",
    "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
}
SHORT_FORM = [{"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["bucket:data/*"]}]


def inline_document() -> dict[str, Any]:
    """A scenario with a document at every place one goes (each its own copy: PyYAML would
    write one shared object with an anchor, which a scenario may not hold)."""
    document = {
        "version": 1,
        "buckets": {"data": {"objects": {"a.txt": "a"}, "policy": BUCKET_POLICY}},
        "users": {"reader": {"policy": READ_DATA, "boundary": BOUNDARY}},
        "roles": {"analyst": {"policy": SHORT_FORM, "session_policy": READ_DATA}},
        "expect": [
            {
                "principal": "reader",
                "action": "s3:GetObject",
                "resource": "bucket:data/a.txt",
                "result": "allow",
            }
        ],
    }
    return cast(dict[str, Any], json.loads(json.dumps(document)))


# (section, name, key) of every place a document goes.
PLACES = [
    ("buckets", "data", "policy"),
    ("users", "reader", "policy"),
    ("users", "reader", "boundary"),
    ("roles", "analyst", "policy"),
    ("roles", "analyst", "session_policy"),
]


def write_scenario(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def moved_to_file(
    directory: Path, place: tuple[str, str, str], text: str, path: str = "policies/p.json"
) -> Path:
    """The inline scenario with the document at `place` replaced by `path`, holding `text`."""
    section, name, key = place
    document = inline_document()
    del document[section][name][key]
    document[section][name][f"{key}_file"] = path
    target = directory / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return write_scenario(directory, document)


def refusal(path: Path) -> str:
    with pytest.raises(BadInput) as raised:
        read_source(str(path))
    assert raised.value.exit_code == 2
    message = raised.value.message
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize("place", PLACES, ids=lambda p: ".".join(p))
@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_a_file_compiles_to_what_the_document_inline_does(
    place: tuple[str, str, str], syntax: str, tmp_path: Path
) -> None:
    section, name, key = place
    value = inline_document()[section][name][key]
    text = json.dumps(value, indent=4) if syntax == "json" else yaml.safe_dump(value)
    scenario = moved_to_file(tmp_path, place, text)
    source = read_source(str(scenario))
    assert source.files == {"policies/p.json": text}
    inline = ScenarioSource(yaml.safe_dump(inline_document()), "inline.yaml")
    assert compile_source(source, NAMING) == compile_source(inline, NAMING)
    # The validated document has the file's document where the file was named.
    document = validate(source)
    assert document[section][name][key] == value
    assert f"{key}_file" not in document[section][name]


def test_the_stored_texts_are_used_not_the_files(tmp_path: Path) -> None:
    scenario = moved_to_file(tmp_path, PLACES[1], json.dumps(READ_DATA))
    source = read_source(str(scenario))
    (tmp_path / "policies" / "p.json").unlink()
    stored = ScenarioSource(source.text, "the scenario stored with run x", dict(source.files))
    assert compile_source(stored, NAMING) == compile_source(source, NAMING)
    # A text without the file's is refused, naming the place: nothing goes to the disk for it.
    with pytest.raises(BadInput) as raised:
        validate(ScenarioSource(source.text, "stored"))
    assert raised.value.message == (
        "stored: users.reader.policy_file: policies/p.json: not read with the scenario"
    )


def test_the_checked_documents_are_keyed_by_the_files_texts_too() -> None:
    document = inline_document()
    del document["users"]["reader"]["policy"]
    document["users"]["reader"]["policy_file"] = "p.json"
    text = yaml.safe_dump(document)
    writes = {**READ_DATA, "Statement": [{**READ_DATA["Statement"][0], "Action": "s3:PutObject"}]}
    first = validate(ScenarioSource(text, "a.yaml", {"p.json": json.dumps(READ_DATA)}))
    second = validate(ScenarioSource(text, "b.yaml", {"p.json": json.dumps(writes)}))
    assert first["users"]["reader"]["policy"] == READ_DATA
    assert second["users"]["reader"]["policy"] == writes


def test_the_sha256_covers_the_files() -> None:
    text = "version: 1\n"
    assert ScenarioSource(text, "s").sha256 == hashlib.sha256(text.encode()).hexdigest()
    one = ScenarioSource(text, "s", {"p.json": "{}"})
    assert one.sha256 != ScenarioSource(text, "s").sha256
    assert one.sha256 != ScenarioSource(text, "s", {"p.json": "{ }"}).sha256
    assert one.sha256 != ScenarioSource(text, "s", {"q.json": "{}"}).sha256
    # Canonical: the order the files were read in does not count.
    both = {"p.json": "{}", "q.json": "[]"}
    reversed_ = dict(reversed(both.items()))
    assert ScenarioSource(text, "s", both).sha256 == ScenarioSource(text, "s", reversed_).sha256


def test_one_file_named_twice_is_read_once(tmp_path: Path) -> None:
    document = inline_document()
    for section, name, key in [("users", "reader", "policy"), ("roles", "analyst", "policy")]:
        del document[section][name][key]
        document[section][name][f"{key}_file"] = "read.json"
    (tmp_path / "read.json").write_text(json.dumps(READ_DATA))
    source = read_source(str(write_scenario(tmp_path, document)))
    assert list(source.files) == ["read.json"]
    compiled = validate(source)
    assert compiled["roles"]["analyst"]["policy"] == compiled["users"]["reader"]["policy"]


def test_a_document_and_its_file_both_given_are_refused(tmp_path: Path) -> None:
    document = inline_document()
    document["roles"]["analyst"]["session_policy_file"] = "p.json"
    assert refusal(write_scenario(tmp_path, document)) == (
        "roles.analyst: give session_policy or session_policy_file, not both: they are one "
        "document, written inline or in a file"
    )


def _deep(levels: int) -> str:
    return "Statement: " + "[" * levels + "]" * levels + "\n"


BAD_FILES = [
    pytest.param(None, "cannot read it: No such file or directory", id="missing"),
    pytest.param(b"\xff\xfe{}", "not UTF-8 text; a policy file is JSON or YAML", id="not utf-8"),
    pytest.param(
        '{"Version": "2012-10-17", "Statement": [}',
        "line 1, column 41: Expecting value (JSON)",
        id="invalid json",
    ),
    pytest.param(
        "Statement: [a, b\n",
        "line 2, column 1: expected ',' or ']', but got '<stream end>' (YAML)",
        id="invalid yaml",
    ),
    pytest.param(
        "base: &base {Effect: Allow}\nStatement: [*base]\n",
        "line 1, column 7: YAML anchor &base is not allowed in a scenario file; write the value "
        "out in full instead",
        id="anchor",
    ),
    pytest.param(_deep(30), "line 1, column 32: nested more than 20 levels deep", id="too deep"),
    pytest.param(
        json.dumps({**READ_DATA, "Statement": [{**READ_DATA["Statement"][0], "Effect": "Allw"}]}),
        'Statement[0].Effect: must be "Allow" or "Deny"',
        id="what IAM refuses",
    ),
    pytest.param(
        json.dumps(
            {**READ_DATA, "Statement": {**READ_DATA["Statement"][0], "Resource": "bucket:x"}}
        ),
        'Statement.Resource: unknown bucket "x"; the buckets are: data',
        id="an unknown reference",
    ),
    pytest.param(
        json.dumps({"Version": "2012-10-17"}),
        "'Statement' is a required property",
        id="not a document",
    ),
]


@pytest.mark.parametrize(("content", "problem"), BAD_FILES)
def test_a_bad_file_is_one_line_naming_the_place_and_the_file(
    content: str | bytes | None, problem: str, tmp_path: Path
) -> None:
    scenario = moved_to_file(tmp_path, PLACES[1], "", path="policies/read.json")
    target = tmp_path / "policies" / "read.json"
    if content is None:
        target.unlink()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    assert refusal(scenario).startswith(f"users.reader.policy_file: policies/read.json: {problem}")


def test_a_short_form_error_in_a_file_is_placed_in_it(tmp_path: Path) -> None:
    statements = [{**SHORT_FORM[0], "resources": ["bucket:data/*", "bucket:nowhere"]}]
    scenario = moved_to_file(tmp_path, PLACES[3], yaml.safe_dump(statements), "short.yaml")
    assert refusal(scenario) == (
        'roles.analyst.policy_file: short.yaml: [0].resources[1]: unknown bucket "nowhere"; '
        "the buckets are: data"
    )


def test_a_bucket_policy_file_is_held_to_what_a_bucket_takes(tmp_path: Path) -> None:
    public = {**BUCKET_POLICY, "Statement": {**BUCKET_POLICY["Statement"], "Principal": "*"}}
    public["Statement"]["Effect"] = "Allow"
    scenario = moved_to_file(tmp_path, PLACES[0], json.dumps(public), "bucket.json")
    assert refusal(scenario).startswith(
        "buckets.data.policy_file: bucket.json: Statement: an Allow for everyone would open"
    )


def test_an_absolute_path_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    absolute = tmp_path / "read.json"
    absolute.write_text(json.dumps(READ_DATA))
    scenario = moved_to_file(tmp_path, PLACES[1], "", path=str(absolute))
    assert refusal(scenario) == (
        f"users.reader.policy_file: {absolute}: an absolute path; write it relative to the "
        "scenario file's directory, so that the scenario and its policy files move together"
    )


def test_the_path_is_relative_to_the_scenarios_directory_not_the_working_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "scenarios"
    here.mkdir()
    scenario = moved_to_file(here, PLACES[1], json.dumps(READ_DATA), "../shared/read.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert read_source(str(scenario)).files == {"../shared/read.json": json.dumps(READ_DATA)}


def test_a_file_over_64_kib_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_POLICY_FILE_BYTES == 64 * 1024
    text = json.dumps(READ_DATA)
    largest = text + " " * (MAX_POLICY_FILE_BYTES - len(text))
    read_source(str(moved_to_file(tmp_path, PLACES[1], largest)))  # the cap itself is allowed

    scenario = moved_to_file(tmp_path, PLACES[1], largest + " ")
    monkeypatch.setattr("job.scenario_file._parse", lambda text: pytest.fail("parsed"))
    expected = (
        "users.reader.policy_file: policies/p.json: larger than 65,536 bytes (64 KiB), the most "
        "a policy file may be; IAM takes at most 6,144 characters in a managed policy, S3 20 KB "
        "in a bucket policy"
    )
    assert refusal(scenario) == expected


def test_a_device_is_read_no_further_than_the_cap(tmp_path: Path) -> None:
    scenario = moved_to_file(tmp_path, PLACES[1], "")
    depth = len(tmp_path.parts) + 2
    document = yaml.safe_load(scenario.read_text())
    document["users"]["reader"]["policy_file"] = "../" * depth + "dev/zero"
    assert "larger than 65,536 bytes" in refusal(write_scenario(tmp_path, document))


def test_stored_texts_are_held_to_the_caps_too() -> None:
    document = inline_document()
    del document["users"]["reader"]["policy"]
    document["users"]["reader"]["policy_file"] = "p.json"
    text = yaml.safe_dump(document)
    too_big = json.dumps(READ_DATA) + " " * MAX_POLICY_FILE_BYTES
    with pytest.raises(BadInput, match=r"^s: users.reader.policy_file: p.json: larger than 65,536"):
        validate(ScenarioSource(text, "s", {"p.json": too_big}))
    # The scenario and its files are stored together: together they fit the scenario's cap.
    many = {"p.json": json.dumps(READ_DATA), "pad.json": " " * MAX_SCENARIO_BYTES}
    with pytest.raises(BadInput, match=r"^s: larger than 1,048,576 bytes"):
        validate(ScenarioSource(text, "s", many))
