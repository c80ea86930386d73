"""Scenario files: what an operator writes to say what a run creates and which permissions it
proves. The format is YAML (JSON is accepted too), held to a JSON Schema (`SCHEMA`, Draft 2020-12,
no property it does not name), then to what a schema cannot say: that every name referred to is
defined, that every action has a probe, that every name fits AWS's limits under any prefix. Every
error is one line naming where in the file it is, and is bad input (exit 2).

A valid file compiles into a `job.scenario.Scenario` under a run's prefix and id. The built-in
scenario is a file too, `job/scenarios/seed.yaml`, shipped in the package.

    version: 1
    buckets:   {data: {objects: {probe/fixture.txt: "read by job verify"}}}
    users:     {reader: {policy: [{effect: Allow, actions: [s3:GetObject],
                                   resources: ["bucket:data/*"]}]}}
    roles:     {}   # IAM roles the job assumes, in the same shape as users
    expect:    [{principal: reader, action: s3:GetObject,
                 resource: "bucket:data/probe/fixture.txt", result: allow}]

Any document may be kept in a file of its own instead (`policy_file: policies/x.json`, and
`boundary_file`, `session_policy_file`; job.policy_files), read with the scenario and carried with
its text (`ScenarioSource.files`), so that what a run stores is all it needs.

`bucket:NAME` and `bucket:NAME/KEY` stand for the run's real bucket `<prefix>-<run id>-NAME` (and
a key in it), as ARNs in the run's partition; a literal ARN or `*` is used as written.

A file is bounded before it is read (`MAX_SCENARIO_BYTES`), YAML anchors and aliases are refused
as the parser meets them (nine nested ones expand to hundreds of millions of values), and each
object's text has its own cap (`MAX_OBJECT_BYTES`): a hostile or mistaken file is refused at once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from job.errors import BadInput
from job.kinds import (
    BucketAttributes,
    GroupAttributes,
    GroupMembershipAttributes,
    GroupPolicyAttachmentAttributes,
    ObjectAttributes,
    PolicyAttributes,
    PrincipalAttributes,
    RolePolicyAttachmentAttributes,
    UserPolicyAttachmentAttributes,
    needs,
    with_verify_kinds,
)
from job.naming import Naming
from job.policy_files import (
    FILE_SUFFIX,
    MAX_POLICY_FILE_BYTES,
    FilePlace,
    file_places,
    placed_in_file,
    policy_file_too_big,
    read_capped,
    read_policy_files,
)
from job.probes import PROBES
from job.scenario import (
    LOGICAL_NAME_PATTERN,
    MAX_BUCKET_LOGICAL_NAME,
    MAX_PRINCIPAL_LOGICAL_NAME,
    MAX_RESOURCE_LOGICAL_NAME,
    Expectation,
    ResourceSpec,
    RunOptions,
    Scenario,
)
from job.scenario_documents import (
    BUCKET_REF,
    MAX_SESSION_POLICY_CHARACTERS,
    ROLE_REF,
    bucket_policy_errors,
    document_errors,
    is_document,
    named_principals,
    resolve_document,
    resolver,
)
from job.vocabulary import ResourceKind, Verdict

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SEED_ORIGIN = "built-in seed scenario"
# An existing bucket's or object's ARN in a cell: arn:PARTITION:s3:::BUCKET[/KEY].
EXISTING_S3_ARN = re.compile(r"arn:aws[a-z-]*:s3:::(?P<bucket>[a-z0-9.-]{3,63})(?:/(?P<key>.+))?")
# An existing role's ARN (a cell's, or roles.NAME.existing):
# arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
EXISTING_ROLE_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$"
)
# What an existing role (roles.NAME.existing) may not have: each would change the role.
CHANGES_A_ROLE = ("policy", "boundary", "managed_policies", "tags")
# S3 refuses bucket names ending so (the others it reserves hold "--", which no logical name does).
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
RESERVED_BUCKET_SUFFIX = "-s3alias"
# A scenario is a few kilobytes. The cap is checked before the file is parsed: parsing is what
# costs (PyYAML takes seconds and hundreds of megabytes on tens of megabytes of text).
MAX_SCENARIO_BYTES = 1024 * 1024
# An object is a fixture a probe reads: its text proves nothing by its size. It is kept twice in
# the ledger (in the run's stored scenario and in its object's row) and read in full by each
# GetObject probe, so it stays small.
MAX_OBJECT_BYTES = 64 * 1024
# The deepest a scenario goes is users.NAME.policy[0].resources[0], six levels below the top. Far
# deeper nesting is refused as it is read: PyYAML's scanner slows with each open bracket, and
# Python's parsers end in a RecursionError.
MAX_NESTING = 20

# IAM takes 50 tags on a user or role; the job puts two of its own (job.aws.handler.Target.tags).
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html#id_tags_rules_creating
MAX_PRINCIPAL_TAGS = 48

_NAME = {"type": "string", "pattern": f"^{LOGICAL_NAME_PATTERN}$"}
_STATEMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["effect", "actions", "resources"],
    "properties": {
        "effect": {"enum": ["Allow", "Deny"]},
        "actions": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": r"^(\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+)$"},
        },
        "resources": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/resource"},
        },
    },
}

# Every key that holds a document (or a principal's short form) has a sibling naming a file that
# holds it instead (job.policy_files): `policy_file: policies/ingest.json` for `policy:`. A
# sibling key, not a new form of the key's value, so that `policy:` keeps meaning exactly what it
# meant, and an error's place says which was written.


def _document_file(key: str) -> dict[str, Any]:
    return {
        "description": f"instead of {key}: the path of a JSON or YAML file holding what {key} "
        "would (an IAM policy as the console or the CLI exports it), relative to the scenario "
        "file's directory; its text is read with the scenario and stored with the run",
        "type": "string",
        "minLength": 1,
    }


def _one_of(*keys: str) -> dict[str, Any]:
    """A document written inline or in a file, not both."""
    return {key: {"not": {"required": [f"{key}{FILE_SUFFIX}"]}} for key in keys}


_PRINCIPAL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "dependentSchemas": _one_of("policy", "boundary"),
    "properties": {
        "policy": {
            "description": "the short form (a list of {effect, actions, resources}), or an IAM "
            "policy document as IAM writes it (Version, Statement, Sid, Effect, Action/NotAction, "
            "Resource/NotResource, Condition), where bucket:NAME[/KEY], principal:NAME and "
            "role:NAME stand for the run's own ARNs",
            "oneOf": [
                {"type": "array", "items": {"$ref": "#/$defs/statement"}},
                {"$ref": "#/$defs/document"},
            ],
        },
        "boundary": {
            "description": "the principal's permissions boundary: an existing managed policy's "
            "ARN, or an IAM document the run creates as a policy of its own",
            "oneOf": [
                {
                    "type": "string",
                    "pattern": r"^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/[\w+=,.@/-]+$",
                },
                {"$ref": "#/$defs/document"},
            ],
        },
        "policy_file": _document_file("policy"),
        "boundary_file": _document_file("boundary"),
        "tags": {
            "description": "the principal's own tags (for aws:PrincipalTag conditions), beside "
            "the job's; keys starting job: or aws: are not the scenario's",
            "type": "object",
            "maxProperties": MAX_PRINCIPAL_TAGS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": 128,
                "pattern": r"^(?!job:)(?!aws:)[\w\s.:/=+@-]+$",
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": 256,
                "pattern": r"^[\w\s.:/=+@-]*$",
            },
        },
        "managed_policies": {
            "description": "existing managed policies (AWS's, or the account's own) attached to "
            "the principal for the run and detached at teardown, never created or changed",
            "type": "array",
            "uniqueItems": True,
            "items": {
                "type": "string",
                "pattern": r"^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/[\w+=,.@/-]+$",
            },
        },
    },
}
# IAM attaches at most this many managed policies to one user or role (10 by default, raised on
# request): the principal's own policy counts among them.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
MAX_MANAGED_POLICIES_PER_PRINCIPAL = 20
# And to one group, at most 10, the group's own policy among them; a user is in at most 10
# groups (the same page).
MAX_MANAGED_POLICIES_PER_GROUP = 10
MAX_GROUPS_PER_USER = 10
# A group: what users have, in the same forms, but neither credentials nor a boundary nor tags
# (IAM cannot tag a group: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html).
_GROUP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        name: _PRINCIPAL["properties"][name]
        for name in ("policy", "policy_file", "managed_policies")
    },
}
_USER: dict[str, Any] = {
    **_PRINCIPAL,
    "properties": {
        **_PRINCIPAL["properties"],
        "groups": {
            "description": "the groups (of this file's groups) the user is a member of: it has "
            "their policies beside its own",
            "type": "array",
            "uniqueItems": True,
            "maxItems": MAX_GROUPS_PER_USER,
            "items": {"type": "string"},
        },
    },
}
# An IAM policy document: its statements are checked as IAM checks them (job.policy_language),
# with the place of what IAM would refuse, once references are resolved.
_DOCUMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["Statement"],
    "properties": {
        "Version": {"type": "string"},
        "Id": {"type": "string"},
        "Statement": {"type": ["object", "array"]},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "job scenario",
    "description": "What a job run creates, and the permissions it proves with each principal's "
    "own credentials.",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "expect"],
    "properties": {
        "version": {"const": 1},
        "buckets": {
            "description": "logical name -> a bucket named <prefix>-<run id>-<logical name>",
            "type": "object",
            "propertyNames": {**_NAME, "maxLength": MAX_BUCKET_LOGICAL_NAME},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "dependentSchemas": _one_of("policy"),
                "properties": {
                    "objects": {
                        "description": "key -> the object's text",
                        "type": "object",
                        "propertyNames": {"minLength": 1, "pattern": "^[^/]"},
                        "additionalProperties": {"type": "string"},
                    },
                    "policy": {
                        "description": "the bucket's policy, an IAM policy document naming its "
                        "principals (principal:NAME, role:NAME, accounts, ARNs), written with "
                        "the job's own lock-down statements; never public",
                        "$ref": "#/$defs/document",
                    },
                    "policy_file": _document_file("policy"),
                },
            },
        },
        "users": {
            "description": "logical name -> an IAM user under /job/, named "
            "<prefix>-<run id>-<logical name>, with one customer-managed policy",
            "type": "object",
            "propertyNames": {**_NAME, "maxLength": MAX_PRINCIPAL_LOGICAL_NAME},
            "additionalProperties": {"$ref": "#/$defs/user"},
        },
        "groups": {
            "description": "logical name -> an IAM group under /job/, named like a user, whose "
            "policies its users (users.NAME.groups) have; not a principal: a cell names a user",
            "type": "object",
            "propertyNames": {**_NAME, "maxLength": MAX_PRINCIPAL_LOGICAL_NAME},
            "additionalProperties": {"$ref": "#/$defs/group"},
        },
        "roles": {
            "description": "logical name -> an IAM role the job assumes, named like a user",
            "type": "object",
            "propertyNames": {**_NAME, "maxLength": MAX_PRINCIPAL_LOGICAL_NAME},
            "additionalProperties": {"$ref": "#/$defs/role"},
        },
        "expect": {
            "description": "every cell the run proves, with the principal's own credentials",
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["principal", "action", "resource", "result"],
                "properties": {
                    "principal": {"type": "string"},
                    "action": {
                        "type": "string",
                        "description": "what verify probes: " + ", ".join(sorted(PROBES)),
                    },
                    "resource": {"$ref": "#/$defs/resource"},
                    "result": {"enum": ["allow", "deny"]},
                    "context": {
                        "description": "what the probe's request carries, for conditions: "
                        + "; ".join(
                            f"{action}: {', '.join(f'{n} ({k})' for n, k in p.context.items())}"
                            for action, p in sorted(PROBES.items())
                            if p.context
                        ),
                        "type": "object",
                        "minProperties": 1,
                        "properties": {
                            "prefix": {"type": "string"},
                            "delimiter": {"type": "string", "minLength": 1},
                            "server_side_encryption": {"enum": ["AES256", "aws:kms"]},
                            "tags": {
                                "type": "object",
                                "maxProperties": 10,
                                "additionalProperties": {"type": "string"},
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
    "$defs": {
        "user": _USER,
        "group": _GROUP,
        "role": {
            **_PRINCIPAL,
            "dependentSchemas": _one_of("policy", "boundary", "session_policy"),
            "properties": {
                **_PRINCIPAL["properties"],
                "existing": {
                    "description": "an existing role's ARN: verify assumes it as it is; the run "
                    "never creates, changes or deletes it (it takes no policy, boundary, managed "
                    "policies or tags then). The runner needs sts:AssumeRole on it, and its trust "
                    "policy must allow the runner",
                    "type": "string",
                    "pattern": EXISTING_ROLE_ARN.pattern,
                },
                "session_policy": {
                    "description": "an IAM document passed to AssumeRole: verify's session has "
                    "what both it and the role's policies allow",
                    "$ref": "#/$defs/document",
                },
                "session_policy_file": _document_file("session_policy"),
            },
        },
        "statement": _STATEMENT,
        "document": _DOCUMENT,
        "resource": {
            "description": "bucket:NAME, bucket:NAME/KEY, role:NAME, an ARN, or *",
            "type": "string",
            "pattern": r"^(bucket:[a-z0-9-]+(/.+)?|role:[a-z0-9-]+|arn:.+|\*)$",
        },
    },
}


@dataclass(frozen=True)
class ScenarioSource:
    """A scenario file's text as given, and where it came from (for error messages); with the
    texts of the policy files it names, by their paths as written, read once with it."""

    text: str
    origin: str
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """What the run proves, in one value. Without policy files, the SHA-256 of the file's
        bytes (`sha256sum` says the same); with them, of the scenario's text and theirs as one
        canonical JSON array, [text, {path: text}], so that a changed policy file is a changed
        scenario."""
        if not self.files:
            return hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        canonical = json.dumps(
            [self.text, dict(sorted(self.files.items()))],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seed_source() -> ScenarioSource:
    text = resources.files("job").joinpath("scenarios/seed.yaml").read_text(encoding="utf-8")
    return ScenarioSource(text, SEED_ORIGIN)


def read_source(path: str) -> ScenarioSource:
    """The file at `path` and the policy files it names, validated: BadInput (one line) when one
    cannot be read or is invalid."""
    try:
        data = read_capped(Path(path), MAX_SCENARIO_BYTES)
    except OSError as error:
        raise BadInput(f"cannot read scenario file {path}: {error.strerror or error}") from None
    if len(data) > MAX_SCENARIO_BYTES:
        raise BadInput(f"{path}: {_too_big()}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text; a scenario file is YAML or JSON") from None
    try:
        # The scenario as written says which files to read; nothing is read for an invalid one.
        files = read_policy_files(Path(path), _written_document(text))
    except BadInput as error:
        raise BadInput(f"{path}: {error.message}") from None
    source = ScenarioSource(text, path, files)
    validate(source)
    return source


def source_for(path: str | None) -> ScenarioSource:
    """The operator's file, or the built-in seed when none is given."""
    return seed_source() if path is None else read_source(path)


def validate(source: ScenarioSource) -> dict[str, Any]:
    """The file's document, once it passes the schema and the cross-reference checks, with each
    policy file's document where the file is named; every error names the file."""
    try:
        # A copy: the document is the cache's, and callers may change theirs.
        files = tuple(sorted(source.files.items()))
        return copy.deepcopy(_valid_document(source.text, files))
    except BadInput as error:
        raise BadInput(f"{source.origin}: {error.message}") from None


# A `job run` reads its one scenario in every phase (and a janitor the same seed in every stale
# run's): a text that passed is not parsed and checked again. Refusals are not cached (an
# exception never is), so each is raised again, under the name its caller gives. The key holds
# the policy files' texts: the same scenario with a changed file is another scenario.
@functools.lru_cache(maxsize=64)
def _valid_document(text: str, files: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    # Texts not read by read_source (stored with a run) are held to the same caps.
    if len(text.encode("utf-8")) + sum(len(body.encode("utf-8")) for _, body in files) > (
        MAX_SCENARIO_BYTES
    ):
        raise BadInput(_too_big())
    document = _written_document(text)
    places = file_places(document)
    if places:
        document = _with_files_inlined(document, places, dict(files))
        error = _schema_error(document)
    else:
        error = None
    if error is None:
        error = next(_cross_reference_errors(document), None)
    if error is not None:
        raise BadInput(placed_in_file(error, places))
    return document


@functools.lru_cache(maxsize=64)
def _written_document(text: str) -> dict[str, Any]:
    """The text parsed and held to the schema, as written (policy files named, not yet read).
    The cache's: not to be changed."""
    if len(text.encode("utf-8")) > MAX_SCENARIO_BYTES:
        raise BadInput(_too_big())
    document = _parse(text)
    error = _schema_error(document)
    if error is not None:
        raise BadInput(error)
    return cast(dict[str, Any], document)


def _with_files_inlined(
    written: Mapping[str, Any], places: list[FilePlace], files: Mapping[str, str]
) -> dict[str, Any]:
    """A copy of the document with each file's document where the file is named, as if written
    there: whatever checks and compiles the scenario after this sees one shape."""
    document = copy.deepcopy(dict(written))
    for place in places:
        text = files.get(place.path)
        if text is None:
            raise BadInput(f"{place.written}: {place.path}: not read with the scenario")
        if len(text.encode("utf-8")) > MAX_POLICY_FILE_BYTES:
            raise BadInput(f"{place.written}: {place.path}: {policy_file_too_big()}")
        try:
            value = _parse(text)
        except BadInput as error:
            raise BadInput(f"{place.written}: {place.path}: {error.message}") from None
        entry = document[place.section][place.name]
        del entry[f"{place.key}{FILE_SUFFIX}"]
        entry[place.key] = value
    return document


def boundary_conflict(document: Mapping[str, Any], options: RunOptions) -> str | None:
    """A principal has one permissions boundary: the run-wide one (--permissions-boundary, an
    operator's limit on every user) and a scenario's own cannot both apply."""
    if not options.permissions_boundary:
        return None
    for section in ("users", "roles"):
        for name, principal in (document.get(section) or {}).items():
            if (principal or {}).get("boundary") is not None:
                return (
                    f"{section}.{name}.boundary: the scenario gives this principal a permissions"
                    " boundary and --permissions-boundary (JOB_PERMISSIONS_BOUNDARY) gives every"
                    " user one; a principal has one: drop one of them"
                )
    return None


def compile_source(
    source: ScenarioSource, naming: Naming, options: RunOptions | None = None
) -> Scenario:
    return compile_scenario(validate(source), naming, options)


def supported_actions() -> list[str]:
    """The actions verify can probe: the probes' registry decides, not this module."""
    return sorted(PROBES)


def scenario_kinds(scenario: Scenario) -> set[ResourceKind]:
    """What a run of the scenario creates: its resources, and what verify makes for them (the
    access keys of its users, the inline policy verify --measure-revocation puts on a role)."""
    return with_verify_kinds({spec.kind for spec in scenario.resources})


# Reading


def _too_big() -> str:
    return (
        f"larger than {MAX_SCENARIO_BYTES:,} bytes (1 MiB), the most a scenario file may be; "
        f"a scenario is a few kilobytes: keep object texts short (at most {MAX_OBJECT_BYTES:,} "
        "bytes each)"
    )


class _ScenarioLoader:
    """Built on first use: PyYAML is imported only by commands that read scenarios."""

    loader: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.loader is None:
            import yaml

            class Loader(yaml.SafeLoader):
                depth = 0

                def compose_node(self, parent: Any, index: Any) -> Any:
                    # An alias shares one node, and whatever walks the document (the key check,
                    # the schema) walks it again at every use: nine nested anchors of nine
                    # aliases each are 9**9 values from a few hundred bytes. Refused at the
                    # first anchor or alias, before anything is built.
                    event = self.peek_event()  # type: ignore[no-untyped-call]
                    mark = event.start_mark
                    where = f"line {mark.line + 1}, column {mark.column + 1}"
                    if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                        what = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
                        raise BadInput(
                            f"{where}: YAML {what}{event.anchor} is not allowed in a scenario "
                            "file; write the value out in full instead"
                        )
                    if self.depth > MAX_NESTING:
                        raise BadInput(f"{where}: {_too_deep()}")
                    self.depth += 1
                    try:
                        return super().compose_node(parent, index)
                    finally:
                        self.depth -= 1

            def mapping(loader: Loader, node: Any) -> dict[Any, Any]:
                # PyYAML keeps the last of two equal keys without a word: a second "writer" would
                # silently replace the first.
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = loader.construct_object(key_node, deep=True)
                    if key in seen:
                        mark = key_node.start_mark
                        raise BadInput(
                            f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {key!r}"
                        )
                    seen.add(key)
                return dict(loader.construct_pairs(node, deep=True))

            Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
            cls.loader = Loader
        return cls.loader


def _parse(text: str) -> Any:
    """The text as JSON when it looks like JSON (for JSON's own error messages), else as YAML."""
    import yaml

    try:
        if text.lstrip().startswith("{"):
            document = json.loads(text)
        else:
            document = yaml.load(text, Loader=_ScenarioLoader.get())  # a SafeLoader
    except json.JSONDecodeError as error:
        raise BadInput(f"line {error.lineno}, column {error.colno}: {error.msg} (JSON)") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise BadInput(f"{where}{error.problem or error} (YAML)") from None
    except yaml.YAMLError as error:
        raise BadInput(f"not YAML: {error}") from None
    except RecursionError:  # JSON nested deeper than Python's parser goes
        raise BadInput(_too_deep()) from None
    _check_keys(document, [])
    return document


def _too_deep() -> str:
    return (
        f"nested more than {MAX_NESTING} levels deep; a scenario's deepest value, "
        "users.NAME.policy[0].resources[0], is six"
    )


def _check_keys(node: Any, path: list[str | int]) -> None:
    """YAML reads `on:`, `yes:` or `1:` as a boolean or a number; every name here is a string.
    JSON's nesting is bounded here (YAML's is, as it is read)."""
    if len(path) > MAX_NESTING:
        raise BadInput(f"{render_path(path)}: {_too_deep()}")
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise BadInput(
                    f"{render_path(path) or 'top level'}: key {key!r} is not a string (YAML reads "
                    "on, off, yes, no and numbers so): quote the name"
                )
            _check_keys(value, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_keys(value, [*path, index])


def render_path(path: Sequence[str | int]) -> str:
    """`users.writer.policy[0].effect`, from the path jsonschema gives."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# The schema


def _schema_error(document: Any) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(SCHEMA).iter_errors(document))
    return None if error is None else _describe(error)


def _describe(error: ValidationError) -> str:
    path = list(error.absolute_path)
    schema_path = list(error.absolute_schema_path)
    if error.validator == "not" and "dependentSchemas" in schema_path:
        key = schema_path[schema_path.index("dependentSchemas") + 1]
        return (
            f"{render_path(path)}: give {key} or {key}{FILE_SUFFIX}, not both: they are one "
            "document, written inline or in a file"
        )
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad name at the mapping that holds it; say the name itself.
        name = str(error.instance)
        where = render_path([*path, name])
        if path and path[0] == "buckets" and len(path) > 1:
            return f"{where}: an object key must not be empty or start with '/'"
        if error.validator == "maxLength":
            return f"{where}: {_too_long(str(path[0]), name)}"
        return (
            f"{where}: a logical name is lowercase letters and digits, with single '-' between "
            f"them ({LOGICAL_NAME_PATTERN})"
        )
    return f"{render_path(path) or 'top level'}: {error.message}"


def _too_long(section: str, name: str) -> str:
    if section == "buckets":
        limit, why = MAX_BUCKET_LOGICAL_NAME, "a bucket name in S3's 63 characters"
    else:
        limit, why = MAX_PRINCIPAL_LOGICAL_NAME, "an IAM name in IAM's 64 characters"
    return (
        f"logical name {name!r} is {len(name)} characters; at most {limit} fit "
        f"<prefix>-<run id>-<name> as {why} (a prefix may be 20 characters, a run id is 10)"
    )


# What the schema cannot say


def _cross_reference_errors(document: Mapping[str, Any]) -> Iterator[str]:
    buckets: Mapping[str, Any] = document.get("buckets") or {}
    principals: dict[str, str] = {}  # logical name -> "users" or "roles"
    taken: dict[str, str] = {name: f"buckets.{name}" for name in buckets}
    for name, bucket in buckets.items():
        if f"-{name}".endswith(RESERVED_BUCKET_SUFFIX):
            yield f"buckets.{name}: S3 reserves bucket names ending {RESERVED_BUCKET_SUFFIX!r}"
        for key, body in (bucket.get("objects") or {}).items():
            logical = f"{name}/{key}"
            if len(logical) > MAX_RESOURCE_LOGICAL_NAME:
                yield (
                    f'buckets.{name}.objects.{key}: "{logical}" is {len(logical)} characters; '
                    f"the ledger names an object <bucket>/<key> in at most "
                    f"{MAX_RESOURCE_LOGICAL_NAME}"
                )
            size = len(body.encode("utf-8"))
            if size > MAX_OBJECT_BYTES:
                yield (
                    f"buckets.{name}.objects.{key}: the text is {size:,} bytes; an object's text "
                    f"is at most {MAX_OBJECT_BYTES:,} (64 KiB): a probe needs only a line"
                )
    groups: Mapping[str, Any] = document.get("groups") or {}
    for section in ("users", "groups", "roles"):
        for name in document.get(section) or {}:
            if name in taken:
                yield f"{section}.{name}: the name is taken by {taken[name]}; names are unique"
            taken[name] = f"{section}.{name}"
            if section != "groups":  # a group has no credentials: it is no principal
                principals[name] = section
    # What the scenario derives from a user's, role's or group's name (its policy, its
    # attachments, a user's memberships, the access keys verify makes) must not collide with a
    # name the file gives.
    owners = {**principals, **dict.fromkeys(groups, "groups")}
    for name, section in owners.items():
        owner = f"{section}.{name}"
        for what in ("policy", "attachment", "boundary"):
            if f"{name}-{what}" in taken:
                yield f"{taken[f'{name}-{what}']}: the name is taken by {owner}'s {what}"
        for series, what in (
            ("managed", "managed policy attachments"),
            ("key", "access keys"),
            ("group", "group memberships"),
        ):
            for other in taken:
                rest = other.removeprefix(f"{name}-{series}-")
                if rest != other and rest.isdigit():
                    yield f"{taken[other]}: the name is taken by {owner}'s {what}"
        managed = (document[section][name] or {}).get("managed_policies") or []
        most, holder = (
            (MAX_MANAGED_POLICIES_PER_GROUP, "group")
            if section == "groups"
            else (MAX_MANAGED_POLICIES_PER_PRINCIPAL, "user or role")
        )
        if len(managed) + 1 > most:
            yield (
                f"{owner}.managed_policies: {len(managed)} policies and the"
                f" {'group' if section == 'groups' else 'principal'}'s own are more than the"
                f" {most} IAM attaches to one {holder}"
            )
    for name, user in (document.get("users") or {}).items():
        for index, group in enumerate((user or {}).get("groups") or []):
            if group not in groups:
                defined = ", ".join(sorted(groups)) or "none"
                yield (
                    f'users.{name}.groups[{index}]: unknown group "{group}"; the groups are:'
                    f" {defined}"
                )
    for name, role in (document.get("roles") or {}).items():
        if (role or {}).get("existing") is None:
            continue
        for what in CHANGES_A_ROLE:
            if role.get(what) is not None:
                yield (
                    f"roles.{name}.{what}: roles.{name} is an existing role, which the run never"
                    f" changes: remove {what}, or remove existing to have the run create the role"
                )
    for name, bucket in buckets.items():
        if bucket.get("policy") is not None:
            yield from bucket_policy_errors(
                f"buckets.{name}.policy", name, bucket["policy"], buckets, principals
            )
    for section in ("users", "groups", "roles"):
        for name, principal in (document.get(section) or {}).items():
            boundary = principal.get("boundary")
            if is_document(boundary):
                yield from document_errors(
                    f"{section}.{name}.boundary", boundary, buckets, principals
                )
            session_policy = principal.get("session_policy")
            if session_policy is not None:
                yield from document_errors(
                    f"{section}.{name}.session_policy",
                    session_policy,
                    buckets,
                    principals,
                    limit=MAX_SESSION_POLICY_CHARACTERS,
                )
            policy = principal.get("policy") or []
            if is_document(policy):
                yield from document_errors(f"{section}.{name}.policy", policy, buckets, principals)
                continue
            for index, statement in enumerate(policy):
                for place, resource in enumerate(statement["resources"]):
                    yield from _reference_errors(
                        f"{section}.{name}.policy[{index}].resources[{place}]",
                        resource,
                        buckets,
                        document.get("roles") or {},
                    )
    supported = supported_actions()
    cells: dict[tuple[str, str, str, str], int] = {}
    for index, cell in enumerate(document["expect"]):
        where = f"expect[{index}]"
        if cell["principal"] in groups:
            yield (
                f'{where}.principal: "{cell["principal"]}" is a group, which has no credentials'
                " to prove anything with; name a user in it (users.NAME.groups)"
            )
        elif cell["principal"] not in principals:
            defined = ", ".join(sorted(principals)) or "none"
            yield (
                f'{where}.principal: unknown principal "{cell["principal"]}"; the users and roles '
                f"are: {defined}"
            )
        action = cell["action"]
        if action not in supported:
            yield (
                f'{where}.action: "{action}" has no probe; verify can check {", ".join(supported)}'
            )
        elif cell["result"] == "deny" and _always_allowed(action):
            # No policy can deny it (AWS answers it for any valid credentials): the cell could
            # never pass, and a canary that always fails proves nothing.
            yield f'{where}.result: {action} is allowed to every principal; expect "allow"'
        yield from _reference_errors(
            f"{where}.resource", cell["resource"], buckets, document.get("roles") or {}
        )
        yield from _aim_errors(where, action, cell["resource"])
        yield from _missing_role_errors(where, cell)
        yield from _missing_object_errors(where, cell, buckets)
        if action in PROBES and cell.get("context"):
            takes = PROBES[action].context
            for name in cell["context"]:
                if name not in takes:
                    yield (
                        f"{where}.context.{name}: {action} sets no {name}; it takes "
                        f"{', '.join(takes) or 'no context'}"
                    )
        cell_key = (cell["principal"], action, cell["resource"], _context_of(cell))
        if cell_key in cells:
            yield f"{where}: the same cell as expect[{cells[cell_key]}]"
        cells.setdefault(cell_key, index)


def _context_of(cell: Mapping[str, Any]) -> str:
    """A cell's request context as canonical JSON ("" for none): part of what the cell is."""
    context = cell.get("context")
    return json.dumps(context, sort_keys=True, separators=(",", ":")) if context else ""


def _reference_errors(
    where: str, resource: str, buckets: Mapping[str, Any], roles: Mapping[str, Any]
) -> Iterator[str]:
    if resource.startswith(BUCKET_REF):
        bucket = resource.removeprefix(BUCKET_REF).split("/", 1)[0]
        if bucket not in buckets:
            defined = ", ".join(sorted(buckets)) or "none"
            yield f'{where}: unknown bucket "{bucket}"; the buckets are: {defined}'
    elif resource.startswith(ROLE_REF):
        role = resource.removeprefix(ROLE_REF)
        if role not in roles:
            defined = ", ".join(sorted(roles)) or "none"
            yield f'{where}: unknown role "{role}"; the roles are: {defined}'


def _missing_object_errors(
    where: str, cell: Mapping[str, str], buckets: Mapping[str, Any]
) -> Iterator[str]:
    """A read of an object the scenario does not create answers nothing: S3 refuses a missing key
    with 403 AccessDenied, not 404 NoSuchKey, when the caller lacks s3:ListBucket, so "deny" would
    pass whatever the policy says and "allow" would read as denied. A key a PutObject cell writes
    does not count: a put that is denied (or not run yet) leaves nothing there.
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)"""
    action, resource = cell["action"], cell["resource"]
    probe = PROBES.get(action)
    if probe is None or not probe.reads_object or not resource.startswith(BUCKET_REF):
        return
    bucket, slash, key = resource.removeprefix(BUCKET_REF).partition("/")
    if not slash or bucket not in buckets:  # refused above, for what it is
        return
    if key not in (buckets[bucket].get("objects") or {}):
        yield (
            f"{where}: {cell['principal']} {action} {resource}: the scenario creates no object "
            "there, and S3 answers 403 AccessDenied, not 404, for a missing key when the caller "
            "lacks s3:ListBucket, so a deny here cannot be told from a missing object; create "
            f"the object under buckets.{bucket}.objects or aim the cell at a key the scenario "
            "creates"
        )


def _missing_role_errors(where: str, cell: Mapping[str, str]) -> Iterator[str]:
    """A denial of a probe a missing role refuses too (sts:AssumeRole) proves nothing about a
    role nobody shows to exist: an ARN typed wrong would pass as "deny". A role of the run
    exists (provision made it); an existing one the file declares is assumed by the job itself
    first (job.phases.verify), which shows it there."""
    probe = PROBES.get(cell["action"])
    if probe is None or not probe.refused_when_role_missing or cell["result"] != "deny":
        return
    if not cell["resource"].startswith(ROLE_REF):
        yield (
            f"{where}.resource: {cell['action']} of a role that does not exist is refused as a"
            " denial is (STS does not say which), so this deny would pass for a mistyped ARN:"
            " declare the role under roles.NAME.existing and aim at role:NAME (the job then"
            " shows it exists by assuming it first)"
        )


def _always_allowed(action: str) -> bool:
    return PROBES[action].always_allowed


def _written_keys(document: Mapping[str, Any]) -> dict[str, list[str]]:
    """By bucket (as the file names it), every key the run may put an object at: the bucket's
    own objects, and the keys of the probes that write one (allowed or not: a wrong "allow"
    writes too). Recorded with the bucket, before it is created, so that its teardown deletes
    those keys and then the bucket, listing the bucket only if S3 says something else is in it."""
    keys: dict[str, set[str]] = {
        bucket: set(spec.get("objects") or {})
        for bucket, spec in (document.get("buckets") or {}).items()
    }
    for cell in document["expect"]:
        resource = str(cell["resource"])
        if PROBES[cell["action"]].writes_object and resource.startswith(BUCKET_REF):
            bucket, _, key = resource.removeprefix(BUCKET_REF).partition("/")
            keys.setdefault(bucket, set()).add(key)
    return {bucket: sorted(written) for bucket, written in keys.items()}


def _existing_s3(resource: str) -> tuple[str, str | None] | None:
    """(bucket, key) of an existing bucket's or object's ARN as a cell writes it, else None."""
    match = EXISTING_S3_ARN.fullmatch(resource)
    if match is None:
        return None
    return match["bucket"], match["key"]


def _aim_errors(where: str, action: str, resource: str) -> Iterator[str]:
    """An S3 probe needs a bucket, and an object's the key: one of the run's (bucket:NAME[/KEY]),
    or, for a probe that changes nothing, an existing one's ARN. A probe that changes something
    is aimed only at the run's own buckets, whatever the expected result: the canary never
    writes to, or deletes from, anything it did not create."""
    if action not in PROBES:
        return  # an action without a probe is refused above, for what it is
    probe = PROBES[action]
    if probe.on_role:
        if not resource.startswith(ROLE_REF) and not EXISTING_ROLE_ARN.match(resource):
            yield (
                f"{where}.resource: {action} is aimed at a role: use role:NAME, or an existing"
                " role's ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )
        return
    if not probe.on_bucket:
        return
    shape = "bucket:NAME/KEY" if probe.on_object else "bucket:NAME"
    existing = _existing_s3(resource)
    if resource.startswith(BUCKET_REF):
        aimed_at_object = "/" in resource
    elif existing is not None and probe.changes:
        yield (
            f"{where}.resource: {action} changes what it is aimed at, and {resource} is not the"
            f" run's: the canary writes only to what it creates; aim it at {shape}"
        )
        return
    elif existing is not None:
        aimed_at_object = existing[1] is not None
    else:
        yield (
            f"{where}.resource: {action} is probed on a bucket: use {shape}, or an existing"
            f" {'object' if probe.on_object else 'bucket'}'s ARN"
        )
        return
    if probe.on_object != aimed_at_object:
        what = "an object" if probe.on_object else "the bucket"
        yield f"{where}.resource: {action} is aimed at {what}, {shape} or its ARN"


# Compiling


def _attachment(section: str, logical_name: str, principal: str, policy_arn: str) -> ResourceSpec:
    """A managed policy (the owner's own, or an existing one) attached to a user, group or role."""
    if section == "groups":
        return ResourceSpec(
            ResourceKind.IAM_GROUP_POLICY_ATTACHMENT,
            logical_name,
            principal,
            GroupPolicyAttachmentAttributes(group_name=principal, policy_arn=policy_arn),
        )
    if section == "users":
        return ResourceSpec(
            ResourceKind.IAM_USER_POLICY_ATTACHMENT,
            logical_name,
            principal,
            UserPolicyAttachmentAttributes(user_name=principal, policy_arn=policy_arn),
        )
    return ResourceSpec(
        ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
        logical_name,
        principal,
        RolePolicyAttachmentAttributes(role_name=principal, policy_arn=policy_arn),
    )


def _short_form_document(
    statements: list[Mapping[str, Any]], arn: Callable[[str], str]
) -> dict[str, Any]:
    """The short form as the IAM document it stands for."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": statement["effect"],
                "Action": list(statement["actions"]),
                "Resource": (
                    arn(statement["resources"][0])
                    if len(statement["resources"]) == 1
                    else [arn(resource) for resource in statement["resources"]]
                ),
            }
            for statement in statements
        ],
    }


def compile_scenario(
    document: Mapping[str, Any], naming: Naming, options: RunOptions | None = None
) -> Scenario:
    """The validated document as what a run creates and expects, named by `naming` (the run's
    prefix, id, account and partition). The names here are a contract with the AWS handlers and
    verify: they find users, roles and buckets by them."""
    options = options or RunOptions()
    real = naming.name

    specs: list[ResourceSpec] = []
    written = _written_keys(document)
    # (section, logical name, the principal as written) for every user and role.
    every_principal: list[tuple[str, str, Mapping[str, Any]]] = [
        (section, name, principal or {})
        for section in ("users", "roles")
        for name, principal in (document.get(section) or {}).items()
    ]
    # Existing roles are assumed as they are: nothing of theirs is made, changed or deleted.
    existing_roles = {
        name: str(principal["existing"])
        for section, name, principal in every_principal
        if principal.get("existing") is not None
    }
    principals = [entry for entry in every_principal if entry[1] not in existing_roles]
    resolve = resolver(
        naming,
        document.get("buckets") or {},
        {name: section for section, name, _ in every_principal},
        existing_roles,
    )
    for bucket, spec in (document.get("buckets") or {}).items():
        policy = spec.get("policy")
        specs.append(
            ResourceSpec(
                ResourceKind.S3_BUCKET,
                bucket,
                real(bucket),
                BucketAttributes(
                    require_tls=options.require_tls,
                    keys=written[bucket],
                    policy=None if policy is None else resolve_document(policy, resolve),
                    principals=None if policy is None else named_principals(policy, resolve),
                ),
            )
        )
        for key, body in (spec.get("objects") or {}).items():
            specs.append(
                ResourceSpec(
                    ResourceKind.S3_OBJECT,
                    f"{bucket}/{key}",
                    key,
                    ObjectAttributes(bucket=real(bucket), key=key, body=body),
                )
            )
    for section, name, principal in principals:
        kind = ResourceKind.IAM_USER if section == "users" else ResourceKind.IAM_ROLE
        boundary = principal.get("boundary")
        boundary_arn = options.permissions_boundary
        tags = principal.get("tags") or None
        if is_document(boundary):
            # A policy of the run's own, made before the principal it bounds.
            boundary_arn = naming.iam_arn("policy", f"{real(name)}-boundary")
            specs.append(
                ResourceSpec(
                    ResourceKind.IAM_POLICY,
                    f"{name}-boundary",
                    f"{real(name)}-boundary",
                    PolicyAttributes(
                        document=resolve_document(boundary, resolve),
                        description=f"job run {naming.run_id}: the permissions boundary of"
                        f" {section[:-1]} {name}",
                    ),
                )
            )
        elif boundary is not None:
            boundary_arn = str(boundary)
        specs.append(
            ResourceSpec(
                kind,
                name,
                real(name),
                PrincipalAttributes(permissions_boundary=boundary_arn, tags=tags),
            )
        )
    # Groups are made beside the users; their policies and attachments come with the users' (a
    # group, like a principal, has a policy of its own and managed policies).
    groups = document.get("groups") or {}
    for name in groups:
        specs.append(ResourceSpec(ResourceKind.IAM_GROUP, name, real(name), GroupAttributes()))
    owners = [*principals, *(("groups", name, group or {}) for name, group in groups.items())]
    for section, name, principal in owners:
        statements = principal.get("policy")
        if not statements:  # a deny-only principal: nothing to attach
            continue
        document_ = (
            resolve_document(statements, resolve)
            if is_document(statements)
            else _short_form_document(statements, resolve)
        )
        specs.append(
            ResourceSpec(
                ResourceKind.IAM_POLICY,
                f"{name}-policy",
                real(name),
                PolicyAttributes(
                    document=document_,
                    description=f"job run {naming.run_id}: the policy of {section[:-1]} {name}",
                ),
            )
        )
    for section, name, principal in owners:
        if not principal.get("policy"):
            continue
        policy_arn = naming.iam_arn("policy", real(name))
        specs.append(_attachment(section, f"{name}-attachment", real(name), policy_arn))
    for section, name, principal in owners:
        managed = principal.get("managed_policies") or []
        for index, policy_arn in enumerate(managed):
            specs.append(_attachment(section, f"{name}-managed-{index}", real(name), policy_arn))
    for name, user in (document.get("users") or {}).items():
        for index, group in enumerate((user or {}).get("groups") or []):
            specs.append(
                ResourceSpec(
                    ResourceKind.IAM_GROUP_MEMBERSHIP,
                    f"{name}-group-{index}",
                    f"{real(name)} in {real(group)}",
                    GroupMembershipAttributes(user_name=real(name), group_name=real(group)),
                )
            )
    expectations = []
    for cell in document["expect"]:
        resource: str = cell["resource"]
        verdict = Verdict(cell["result"])
        existing = _existing_s3(resource) if PROBES[cell["action"]].on_bucket else None
        # Aimed at a bucket (and key) of the run's, or an existing one's, or at `resource`.
        aimed_bucket: str | None = None
        aimed_key: str | None = None
        aimed_resource: str | None = None
        if resource.startswith(BUCKET_REF):
            bucket, slash, key = resource.removeprefix(BUCKET_REF).partition("/")
            aimed_bucket, aimed_key = real(bucket), key if slash else None
        elif resource.startswith(ROLE_REF):
            aimed_resource = resolve(resource)
        elif existing is not None:
            # An existing bucket (or object), probed read-only, by its own name.
            aimed_bucket, aimed_key = existing
        else:
            aimed_resource = resource
        expectations.append(
            Expectation(
                cell["principal"],
                cell["action"],
                verdict,
                aimed_bucket,
                aimed_key,
                aimed_resource,
                context=_context_of(cell),
            )
        )
    # What each resource needs, from its kind's declaration and its attributes (job.kinds).
    needed = needs(specs)
    specs = [replace(spec, needs=tuple(needed[spec.logical_name])) for spec in specs]
    session_policies = {
        name: resolve_document(role["session_policy"], resolve)
        for name, role in (document.get("roles") or {}).items()
        if role.get("session_policy") is not None
    }
    return Scenario(tuple(specs), tuple(expectations), session_policies, existing_roles)
