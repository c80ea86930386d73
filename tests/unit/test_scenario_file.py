"""Scenario files: the schema's and the cross-reference checks' one-line errors, each naming where
in the file it is; compiling into the Scenario the phases use; the packaged seed and the examples
(the CI check that every shipped scenario is valid)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from job.errors import BadInput
from job.kinds import (
    KINDS,
    BucketAttributes,
    GroupMembershipAttributes,
    GroupPolicyAttachmentAttributes,
    PolicyAttributes,
    PrincipalAttributes,
    RolePolicyAttachmentAttributes,
    read_as,
    teardown_needs,
)
from job.naming import Naming
from job.permissions import required_actions, runner_policy
from job.probes import PROBES, Probe
from job.scenario import (
    JOB_BUCKET_NAME,
    MAX_BUCKET_LOGICAL_NAME,
    MAX_PRINCIPAL_LOGICAL_NAME,
    Expectation,
    ResourceSpec,
    RunOptions,
    Scenario,
)
from job.scenario_file import (
    SCHEMA,
    ScenarioSource,
    compile_scenario,
    compile_source,
    read_source,
    scenario_kinds,
    seed_source,
    validate,
)
from job.vocabulary import ResourceKind, Verdict

ROOT = Path(__file__).parents[2]
RUN_ID = "abcdefghij"


def naming(prefix: str = "job", partition: str = "aws", account_id: str = "123456789012") -> Naming:
    # Compiling names things; it makes no AWS call, so no AWS principal is needed.
    return Naming(prefix, RUN_ID, account_id, partition)


def error_of(document: Any, origin: str = "s.yaml") -> str:
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    with pytest.raises(BadInput) as raised:
        validate(ScenarioSource(text, origin))
    assert raised.value.exit_code == 2
    message = raised.value.message
    assert "\n" not in message
    assert message.startswith(f"{origin}: ")
    return message.removeprefix(f"{origin}: ")


def seed_document() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(seed_source().text))


def test_the_seed_and_the_examples_are_valid() -> None:
    """The CI check: every scenario we ship passes the schema and the cross-reference checks."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(SCHEMA)
    files = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.json"))
    assert {path.name for path in files} >= {"seed.yaml", "roles.yaml", "three-principals.yaml"}
    validate(seed_source())
    for path in files:
        read_source(str(path))  # with the policy files it names (examples/policies/)
    assert (ROOT / "examples" / "seed.yaml").read_text() == seed_source().text


def test_json_is_accepted() -> None:
    text = json.dumps(seed_document())
    assert compile_source(ScenarioSource(text, "s.json"), naming()) == compile_source(
        seed_source(), naming()
    )


BAD = [
    pytest.param(
        lambda d: d["users"]["writer"]["policy"][0].update(effect="Alow"),
        "users.writer.policy[0].effect: 'Alow' is not one of ['Allow', 'Deny']",
        id="effect",
    ),
    pytest.param(
        lambda d: d["expect"][3].update(principal="auditr"),
        'expect[3].principal: unknown principal "auditr"; the users and roles are: reader, writer',
        id="principal",
    ),
    pytest.param(
        lambda d: d["users"]["reader"]["policy"][0].update(resources=["bucket:dta/*"]),
        'users.reader.policy[0].resources[0]: unknown bucket "dta"; the buckets are: data, '
        "elsewhere",
        id="policy bucket",
    ),
    pytest.param(
        lambda d: d["expect"][4].update(resource="bucket:nowhere/probe/fixture.txt"),
        'expect[4].resource: unknown bucket "nowhere"; the buckets are: data, elsewhere',
        id="expect bucket",
    ),
    pytest.param(
        lambda d: d["users"]["writer"].update(polcy=d["users"]["writer"].pop("policy")),
        "users.writer: Additional properties are not allowed ('polcy' was unexpected)",
        id="unknown property",
    ),
    pytest.param(
        lambda d: d.pop("version"),
        "top level: 'version' is a required property",
        id="no version",
    ),
    pytest.param(
        lambda d: d.update(version=2),
        "version: 1 was expected",
        id="version",
    ),
    pytest.param(
        lambda d: d["expect"][0].pop("result"),
        "expect[0]: 'result' is a required property",
        id="no result",
    ),
    pytest.param(
        lambda d: d["expect"][1].update(result="allowed"),
        "expect[1].result: 'allowed' is not one of ['allow', 'deny']",
        id="result",
    ),
    pytest.param(
        lambda d: d["buckets"].update(Data={}),
        "buckets.Data: a logical name is lowercase letters and digits, with single '-' between "
        "them ([a-z0-9](-?[a-z0-9])*)",
        id="uppercase name",
    ),
    pytest.param(
        lambda d: d["roles"].update(writer={}) if "roles" in d else d.update(roles={"writer": {}}),
        "roles.writer: the name is taken by users.writer; names are unique",
        id="user and role",
    ),
    pytest.param(
        lambda d: d["buckets"].update(reader={}),
        "users.reader: the name is taken by buckets.reader; names are unique",
        id="bucket and user",
    ),
    pytest.param(
        lambda d: d["buckets"].update({"writer-policy": {}}),
        "buckets.writer-policy: the name is taken by users.writer's policy",
        id="derived name",
    ),
    pytest.param(
        lambda d: d["expect"][3].update(resource="bucket:data/probe/x.txt"),
        "expect[3].resource: s3:ListBucket is aimed at the bucket, bucket:NAME or its ARN",
        id="list bucket on an object",
    ),
    pytest.param(
        lambda d: d["expect"][1].update(resource="*"),
        "expect[1].resource: s3:GetObject is probed on a bucket: use bucket:NAME/KEY, or an "
        "existing object's ARN",
        id="object action on *",
    ),
    pytest.param(
        lambda d: d["expect"][0].update(resource="arn:aws:s3:::prod-data/x.txt"),
        "expect[0].resource: s3:PutObject changes what it is aimed at, and "
        "arn:aws:s3:::prod-data/x.txt is not the run's: the canary writes only to what it "
        "creates; aim it at bucket:NAME/KEY",
        id="a write to an existing bucket",
    ),
    pytest.param(
        lambda d: d["expect"][2].update(resource="arn:aws:s3:::prod-data/x.txt", result="allow"),
        "expect[2].resource: s3:DeleteObject changes what it is aimed at, and "
        "arn:aws:s3:::prod-data/x.txt is not the run's: the canary writes only to what it "
        "creates; aim it at bucket:NAME/KEY",
        id="a delete in an existing bucket, whatever the result",
    ),
    pytest.param(
        lambda d: d["expect"].append(dict(d["expect"][0])),
        "expect[12]: the same cell as expect[0]",
        id="duplicate cell",
    ),
    pytest.param(
        lambda d: d["users"]["reader"]["policy"][0].update(resources=["data/*"]),
        "users.reader.policy[0].resources[0]: 'data/*' does not match "
        "'^(bucket:[a-z0-9-]+(/.+)?|role:[a-z0-9-]+|arn:.+|\\\\*)$'",
        id="resource shape",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_a_bad_file_is_one_line_naming_the_place(change: Any, expected: str) -> None:
    document = seed_document()
    change(document)
    assert error_of(document) == expected


def test_an_action_without_a_probe_lists_the_supported_ones() -> None:
    document = seed_document()
    document["expect"][2]["action"] = "s3:GetBucketAcl"
    message = error_of(document)
    supported = ", ".join(sorted(PROBES))
    assert (
        message == f'expect[2].action: "s3:GetBucketAcl" has no probe; verify can check {supported}'
    )


def test_the_supported_actions_are_the_probe_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe added to the registry is usable at once."""
    probe = Probe("s3:GetBucketAcl", needs=("s3:GetBucketAcl",))
    monkeypatch.setitem(PROBES, "s3:GetBucketAcl", probe)
    document = seed_document()
    document["expect"][2]["action"] = "s3:GetBucketAcl"
    document["expect"][2]["resource"] = "bucket:data"
    validate(ScenarioSource(yaml.safe_dump(document), "s.yaml"))


@pytest.mark.parametrize("result", ["allow", "deny"])
def test_what_no_policy_can_deny_cannot_be_expected_denied(result: str) -> None:
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
    document = seed_document()
    cell = {"principal": "reader", "action": "sts:GetCallerIdentity", "resource": "*"}
    document["expect"].append({**cell, "result": result})
    if result == "allow":
        validate(ScenarioSource(yaml.safe_dump(document), "s.yaml"))
    else:
        index = len(document["expect"]) - 1
        assert error_of(document) == (
            f"expect[{index}].result: sts:GetCallerIdentity is allowed to every principal; "
            'expect "allow"'
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nexpect: [\n",
            "line 3, column 1: expected the node content, but found '<stream end>' (YAML)",
        ),
        (
            "version: 1\nusers:\n  writer: {}\n  writer: {}\nexpect: []\n",
            "line 4, column 3: duplicate key 'writer'",
        ),
        (
            "version: 1\nbuckets:\n  on: {}\nexpect: []\n",
            "buckets: key True is not a string (YAML reads on, off, yes, no and numbers so): quote "
            "the name",
        ),
        (
            '{"version": 1,}',
            "line 1, column 15: Expecting property name enclosed in double quotes (JSON)",
        ),
        ("- a list\n", "top level: ['a list'] is not of type 'object'"),
    ],
    ids=["yaml", "duplicate key", "boolean key", "json", "not a mapping"],
)
def test_unreadable_files(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    from job.scenario_file import read_source

    with pytest.raises(BadInput, match=r"cannot read scenario file .*nope.yaml: No such file"):
        read_source(str(tmp_path / "nope.yaml"))


def test_names_fit_aws_limits_under_the_longest_prefix() -> None:
    """<prefix>-<run id>-<name>: 20 + 1 + 10 + 1 + 31 = 63 (S3), + 32 = 64 (IAM)."""
    assert (MAX_BUCKET_LOGICAL_NAME, MAX_PRINCIPAL_LOGICAL_NAME) == (31, 32)
    document = seed_document()
    bucket, user = "b" * MAX_BUCKET_LOGICAL_NAME, "u" * MAX_PRINCIPAL_LOGICAL_NAME
    document["buckets"][bucket] = {}
    document["users"][user] = {}
    scenario = compile_scenario(validate(_source(document)), naming("p" * 20))
    names = {spec.logical_name: spec.name for spec in scenario.resources}
    assert len(names[bucket]) == 63 and len(names[user]) == 64
    assert JOB_BUCKET_NAME.fullmatch(names[bucket])

    document["buckets"]["b" * (MAX_BUCKET_LOGICAL_NAME + 1)] = {}
    assert error_of(document) == (
        f"buckets.{'b' * 32}: logical name '{'b' * 32}' is 32 characters; at most 31 fit "
        "<prefix>-<run id>-<name> as a bucket name in S3's 63 characters (a prefix may be 20 "
        "characters, a run id is 10)"
    )
    del document["buckets"]["b" * (MAX_BUCKET_LOGICAL_NAME + 1)]
    document["roles"] = {"r" * 33: {}}
    assert error_of(document).startswith(f"roles.{'r' * 33}: logical name '{'r' * 33}' is 33 ")


def test_an_object_whose_ledger_name_is_too_long() -> None:
    document = seed_document()
    document["buckets"]["data"]["objects"]["k" * 60] = "x"
    assert error_of(document).startswith(
        f'buckets.data.objects.{"k" * 60}: "data/{"k" * 60}" is 65 characters'
    )


def test_sweep_knows_any_bucket_a_scenario_may_name() -> None:
    for name in ("data", "elsewhere", "inbox", "a", "x-1-y", "b" * 31):
        assert JOB_BUCKET_NAME.fullmatch(f"job-{RUN_ID}-{name}")
    for name in ("Data", "a--b", "-a", "a-", "b" * 32):
        assert not JOB_BUCKET_NAME.fullmatch(f"job-{RUN_ID}-{name}")
    assert not JOB_BUCKET_NAME.fullmatch("job-notarunid-data")


def _source(document: dict[str, Any]) -> ScenarioSource:
    return ScenarioSource(yaml.safe_dump(document, sort_keys=False), "s.yaml")


def _old_spec(
    kind: ResourceKind,
    logical_name: str,
    name: str,
    attributes: dict[str, Any],
    needs: tuple[str, ...] = (),
) -> ResourceSpec:
    """A resource of the old seed, its attributes as the ledger's JSON held them."""
    return ResourceSpec(kind, logical_name, name, KINDS[kind].attributes.of(attributes), needs)


def _old_seed_scenario(target: Naming, options: RunOptions) -> Scenario:
    """job.scenario.seed_scenario as it was before scenario files, kept as the reference the
    packaged seed must prove the same as (only the logical names of buckets and objects and the
    policies' descriptions differ)."""
    base = f"{target.prefix}-{target.run_id}"
    bucket, decoy = f"{base}-data", f"{base}-elsewhere"
    fixture = "probe/fixture.txt"
    resources: list[ResourceSpec] = []
    for bucket_role, object_role, name, body in (
        ("bucket", "fixture", bucket, "read by job verify"),
        ("elsewhere", "elsewhere-fixture", decoy, "nobody here may read this"),
    ):
        resources += [
            _old_spec(
                ResourceKind.S3_BUCKET, bucket_role, name, {"require_tls": options.require_tls}
            ),
            _old_spec(
                ResourceKind.S3_OBJECT,
                object_role,
                fixture,
                {"bucket": name, "key": fixture, "body": body},
                needs=(bucket_role,),
            ),
        ]
    grants = {"writer": ("s3:PutObject", "s3:GetObject"), "reader": ("s3:GetObject",)}
    boundary = (
        {"permissions_boundary": options.permissions_boundary}
        if options.permissions_boundary
        else {}
    )
    for principal in grants:
        resources.append(
            _old_spec(ResourceKind.IAM_USER, principal, f"{base}-{principal}", dict(boundary))
        )
    for principal, actions in grants.items():
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": list(actions),
                    "Resource": target.s3_arn(bucket, "*"),
                }
            ],
        }
        resources.append(
            _old_spec(
                ResourceKind.IAM_POLICY,
                f"{principal}-policy",
                f"{base}-{principal}",
                {"document": document, "description": "(not compared)"},
            )
        )
    for principal in grants:
        resources.append(
            _old_spec(
                ResourceKind.IAM_USER_POLICY_ATTACHMENT,
                f"{principal}-attachment",
                f"{base}-{principal}",
                {
                    "user_name": f"{base}-{principal}",
                    "policy_arn": target.iam_arn("policy", f"{base}-{principal}"),
                },
                needs=(principal, f"{principal}-policy"),
            )
        )
    expectations: list[Expectation] = []
    for principal, granted in grants.items():
        for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
            key = (
                fixture
                if action == "s3:GetObject"
                else f"probe/{principal}-{action.split(':')[1].lower()}.txt"
            )
            verdict = Verdict.ALLOW if action in granted else Verdict.DENY
            expectations.append(Expectation(principal, action, verdict, bucket, key))
        expectations += [
            Expectation(principal, "s3:ListBucket", Verdict.DENY, bucket),
            Expectation(principal, "s3:GetObject", Verdict.DENY, decoy, fixture),
            Expectation(principal, "iam:ListUsers", Verdict.DENY),
        ]
    return Scenario(tuple(resources), tuple(expectations))


RENAMED = {"bucket": "data", "fixture": "data/probe/fixture.txt"}
RENAMED["elsewhere-fixture"] = "elsewhere/probe/fixture.txt"


def _comparable(scenario: Scenario, tgt: Naming, renamed: dict[str, str]) -> Any:
    def name(logical: str) -> str:
        return renamed.get(logical, logical)

    resources = [
        (
            spec.kind,
            name(spec.logical_name),
            spec.name,
            # The keys a bucket records (for its teardown) are new: the old seed had none.
            {
                k: v
                for k, v in spec.attributes.to_json().items()
                if k not in ("description", "keys")
            },
            tuple(name(need) for need in spec.needs),
        )
        for spec in scenario.resources
    ]
    cells = [
        (e.principal, e.action, e.expected, e.bucket, e.key, e.resource_arn(tgt))
        for e in scenario.expectations
    ]
    return resources, cells


@pytest.mark.parametrize(
    "options",
    [RunOptions(), RunOptions("arn:aws:iam::123456789012:policy/boundary", require_tls=False)],
)
def test_the_packaged_seed_proves_what_the_old_seed_did(options: RunOptions) -> None:
    tgt = naming()
    new = compile_source(seed_source(), tgt, options)
    old = _old_seed_scenario(tgt, options)
    assert _comparable(new, tgt, {}) == _comparable(old, tgt, RENAMED)
    assert len(new.expectations) == 12
    assert new.principal_kind("writer") is ResourceKind.IAM_USER


def test_a_bucket_records_every_key_the_run_may_write_into_it() -> None:
    """Its objects' keys and those of every probe that writes, whatever the expected verdict (a
    wrong "allow" writes too); not those of probes that only read or delete."""
    scenario = compile_source(seed_source(), naming())
    keys = {
        spec.logical_name: read_as(spec.attributes, BucketAttributes).keys
        for spec in scenario.resources
        if spec.kind is ResourceKind.S3_BUCKET
    }
    assert keys == {
        "data": ["probe/fixture.txt", "probe/reader-putobject.txt", "probe/writer-putobject.txt"],
        "elsewhere": ["probe/fixture.txt"],
    }
    assert [name for name, probe in PROBES.items() if probe.writes_object] == ["s3:PutObject"]


def test_bucket_references_expand_in_the_runs_partition() -> None:
    document = {
        "version": 1,
        # The object the GetObject cell reads: a read of a missing key proves nothing.
        "buckets": {"data": {"objects": {"a/b.txt": "read by job verify"}}},
        "roles": {
            "analyst": {
                "policy": [
                    {
                        "effect": "Allow",
                        "actions": ["s3:ListBucket", "s3:GetObject"],
                        "resources": ["bucket:data", "bucket:data/*"],
                    },
                    {
                        "effect": "Deny",
                        "actions": ["s3:GetObject"],
                        "resources": ["arn:aws-cn:s3:::someone-else/*"],
                    },
                ]
            }
        },
        "expect": [
            {
                "principal": "analyst",
                "action": "s3:ListBucket",
                "resource": "bucket:data",
                "result": "allow",
            },
            {
                "principal": "analyst",
                "action": "s3:GetObject",
                "resource": "bucket:data/a/b.txt",
                "result": "deny",
            },
            {"principal": "analyst", "action": "iam:ListUsers", "resource": "*", "result": "deny"},
        ],
    }
    tgt = naming("cn", "aws-cn", "210987654321")
    scenario = compile_scenario(validate(_source(document)), tgt)
    specs = {spec.logical_name: spec for spec in scenario.resources}
    bucket = f"cn-{RUN_ID}-data"
    assert specs["analyst"] == ResourceSpec(
        ResourceKind.IAM_ROLE, "analyst", f"cn-{RUN_ID}-analyst", PrincipalAttributes()
    )
    assert read_as(specs["analyst-policy"].attributes, PolicyAttributes).document["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetObject"],
            "Resource": [f"arn:aws-cn:s3:::{bucket}", f"arn:aws-cn:s3:::{bucket}/*"],
        },
        {
            "Effect": "Deny",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws-cn:s3:::someone-else/*",
        },
    ]
    assert specs["analyst-attachment"] == ResourceSpec(
        ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
        "analyst-attachment",
        f"cn-{RUN_ID}-analyst",
        RolePolicyAttachmentAttributes(
            role_name=f"cn-{RUN_ID}-analyst",
            policy_arn=f"arn:aws-cn:iam::210987654321:policy/job/cn-{RUN_ID}-analyst",
        ),
        needs=("analyst", "analyst-policy"),
    )
    assert [e.resource_arn(tgt) for e in scenario.expectations] == [
        f"arn:aws-cn:s3:::{bucket}",
        f"arn:aws-cn:s3:::{bucket}/a/b.txt",
        "*",
    ]
    assert scenario.expectations[1] == Expectation(
        "analyst", "s3:GetObject", Verdict.DENY, bucket, "a/b.txt"
    )
    assert scenario.expectations[2].resource == "*"
    assert scenario.principal_kind("analyst") is ResourceKind.IAM_ROLE
    # Roles are assumed: no access keys, so none in what the runner needs; but verify
    # --measure-revocation may revoke a role's sessions.
    assert scenario_kinds(scenario) == {
        ResourceKind.S3_BUCKET,
        ResourceKind.S3_OBJECT,
        ResourceKind.IAM_ROLE,
        ResourceKind.IAM_POLICY,
        ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
        ResourceKind.IAM_ROLE_SESSION_REVOCATION,
    }


def test_a_principal_without_a_policy_gets_no_policy_or_attachment() -> None:
    scenario = compile_source(
        ScenarioSource((ROOT / "examples" / "three-principals.yaml").read_text(), "t"),
        naming(),
    )
    logical = {spec.logical_name for spec in scenario.resources}
    assert "outsider" in logical
    assert not {"outsider-policy", "outsider-attachment"} & logical
    assert set(scenario.principals) == {"uploader", "auditor", "outsider"}


def _row(
    kind: ResourceKind, logical: str, name: str, physical_id: str | None = None, **attrs: Any
) -> Any:
    return SimpleNamespace(
        kind=kind, logical_name=logical, name=name, physical_id=physical_id, attributes=attrs
    )


def test_teardown_order_comes_from_the_rows_alone() -> None:
    """An old run's rows (logical names "bucket", "fixture") and a new one's order alike."""
    arn = "arn:aws:iam::123456789012:policy/job/job-r-writer"
    rows = [
        _row(ResourceKind.S3_BUCKET, "bucket", "job-r-data"),
        _row(ResourceKind.S3_OBJECT, "fixture", "probe/fixture.txt", bucket="job-r-data", key="k"),
        _row(ResourceKind.S3_BUCKET, "elsewhere", "job-r-elsewhere"),
        _row(ResourceKind.S3_OBJECT, "elsewhere-fixture", "k", bucket="job-r-elsewhere", key="k"),
        _row(ResourceKind.IAM_USER, "writer", "job-r-writer"),
        _row(ResourceKind.IAM_POLICY, "writer-policy", "job-r-writer", arn),
        # Pending: no ARN yet; found by its name.
        _row(ResourceKind.IAM_POLICY, "reader-policy", "job-r-reader"),
        _row(ResourceKind.IAM_USER, "reader", "job-r-reader"),
        _row(
            ResourceKind.IAM_USER_POLICY_ATTACHMENT,
            "writer-attachment",
            "job-r-writer",
            user_name="job-r-writer",
            policy_arn=arn,
        ),
        _row(
            ResourceKind.IAM_USER_POLICY_ATTACHMENT,
            "reader-attachment",
            "job-r-reader",
            user_name="job-r-reader",
            policy_arn="arn:aws:iam::123456789012:policy/job/job-r-reader",
        ),
        _row(ResourceKind.IAM_ACCESS_KEY, "writer-key-3", "access key", user_name="job-r-writer"),
        _row(ResourceKind.IAM_ROLE, "analyst", "job-r-analyst"),
        _row(ResourceKind.IAM_POLICY, "analyst-policy", "job-r-analyst"),
        _row(
            ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
            "analyst-attachment",
            "job-r-analyst",
            role_name="job-r-analyst",
            policy_arn="arn:aws:iam::123456789012:policy/job/job-r-analyst",
        ),
        _row(
            ResourceKind.IAM_ROLE_SESSION_REVOCATION,
            "analyst-revocation-4",
            "AWSRevokeOlderSessions",
            role_name="job-r-analyst",
            issued_before="2026-12-06T00:00:00Z",
        ),
    ]
    assert teardown_needs(rows) == {
        "bucket": {"fixture"},
        "fixture": set(),
        "elsewhere": {"elsewhere-fixture"},
        "elsewhere-fixture": set(),
        "writer": {"writer-attachment", "writer-key-3"},
        "writer-policy": {"writer-attachment"},
        "reader-policy": {"reader-attachment"},
        "reader": {"reader-attachment"},
        "writer-attachment": set(),
        "reader-attachment": set(),
        "writer-key-3": set(),
        "analyst": {"analyst-attachment", "analyst-revocation-4"},
        "analyst-policy": {"analyst-attachment"},
        "analyst-attachment": set(),
        "analyst-revocation-4": set(),
    }


def test_the_runner_policy_narrows_to_a_scenarios_kinds() -> None:
    everything = required_actions()
    assert required_actions(None) == everything
    buckets_only = required_actions({ResourceKind.S3_BUCKET})
    assert "iam:CreateUser" in everything and "iam:CreateUser" not in buckets_only
    assert "s3:CreateBucket" in buckets_only
    # The sweep's listings: every runner makes them, whatever its scenario.
    assert {"iam:ListUsers", "s3:ListAllMyBuckets"} <= buckets_only
    seed = compile_source(seed_source(), naming())
    # The seed's users get access keys from verify: the runner must be allowed to make them.
    assert {"iam:CreateUser", "iam:CreateAccessKey", "iam:DeleteAccessKey", "s3:PutObject"} <= (
        required_actions(scenario_kinds(seed))
    )
    assert runner_policy("job", kinds=None) == runner_policy("job")


def test_a_text_checked_once_is_not_parsed_again_and_each_caller_gets_its_own_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ScenarioSource(seed_source().text + "\n# checked once\n", "first.yaml")
    first = validate(source)
    parsed: list[str] = []
    monkeypatch.setattr("job.scenario_file._parse", parsed.append)
    first["users"].clear()  # a caller changing its document changes nobody else's
    again = validate(ScenarioSource(source.text, "second.yaml"))
    assert parsed == []
    assert set(again["users"]) == {"writer", "reader"}


def test_an_invalid_text_is_refused_every_time_under_its_own_name() -> None:
    text = "version: 1\nbuckets: {}\nusers: {}\nexpect: []\nextra: 1\n"
    for origin in ("a.yaml", "b.yaml"):
        with pytest.raises(BadInput, match=rf"^{origin}: "):
            validate(ScenarioSource(text, origin))


# Bad files refused fast


def alias_bomb(levels: int) -> str:
    """The billion laughs: each anchored list holds nine aliases of the one before, so a few
    hundred bytes stand for 9**levels values."""
    lines = ["version: 1", "l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join([*lines, "expect: []", ""])


def test_an_alias_bomb_is_refused_at_its_first_anchor_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused while the parser reads, not after: no value is constructed and no value walked
    (unrefused, this walk is 9**9 steps long; the guard stops it at 10,000)."""
    import job.scenario_file

    constructed: list[Any] = []
    real_construct = yaml.constructor.BaseConstructor.construct_object

    def construct(self: Any, node: Any, deep: bool = False) -> Any:
        constructed.append(node)
        return real_construct(self, node, deep)

    walked: list[Any] = []
    real_walk = job.scenario_file._check_keys

    def walk(node: Any, path: list[str | int]) -> None:
        walked.append(path)
        assert len(walked) < 10_000, "the aliases were expanded"
        real_walk(node, path)

    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_object", construct)
    monkeypatch.setattr(job.scenario_file, "_check_keys", walk)
    text = alias_bomb(9)
    assert len(text.encode()) < 500
    assert error_of(text) == (
        "line 2, column 5: YAML anchor &l0 is not allowed in a scenario file; write the value "
        "out in full instead"
    )
    assert constructed == [] and walked == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nbuckets:\n  data: &same {}\n  copy: *same\nexpect: []\n",
            "line 3, column 9: YAML anchor &same is not allowed",
        ),
        # A merge key is an alias too.
        (
            "version: 1\nusers:\n  reader:\n    <<: *base\nexpect: []\n",
            "line 4, column 9: YAML alias *base is not allowed",
        ),
    ],
    ids=["anchor", "merge key"],
)
def test_every_anchor_and_alias_is_refused(text: str, expected: str) -> None:
    assert error_of(text) == f"{expected} in a scenario file; write the value out in full instead"


@pytest.mark.parametrize("syntax", ["yaml", "json"])
def test_nesting_far_deeper_than_a_scenario_is_refused(syntax: str) -> None:
    # Python's parsers end in a RecursionError (a "bug", exit 4) well before this depth.
    depth = 100_000
    if syntax == "yaml":
        text = f"version: 1\nexpect: {'[' * depth}{']' * depth}\n"
        where = "line 2, column 29: "  # the 21st bracket
    else:
        text = f'{{"version": 1, "expect": {"[" * depth}{"]" * depth}}}'
        where = ""
    assert error_of(text) == (
        f"{where}nested more than 20 levels deep; a scenario's deepest value, "
        "users.NAME.policy[0].resources[0], is six"
    )
    shallow = f'{{"version": 1, "expect": {"[" * 30}{"]" * 30}}}'
    assert error_of(shallow).startswith(f"expect{'[0]' * 20}: nested more than 20 levels deep")


def _padded(size: int) -> str:
    """The seed, padded with a comment to exactly `size` bytes."""
    seed = seed_source().text
    return seed + "#" + "x" * (size - len(seed.encode()) - 2) + "\n"


def test_a_file_over_one_mebibyte_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from job.scenario_file import MAX_SCENARIO_BYTES, read_source

    assert MAX_SCENARIO_BYTES == 1024 * 1024
    largest = tmp_path / "largest.yaml"
    largest.write_text(_padded(MAX_SCENARIO_BYTES))
    assert largest.stat().st_size == MAX_SCENARIO_BYTES
    read_source(str(largest))  # the cap itself is allowed

    too_big = tmp_path / "too-big.yaml"
    too_big.write_text(_padded(MAX_SCENARIO_BYTES + 1))
    monkeypatch.setattr("job.scenario_file._parse", lambda text: pytest.fail("parsed"))
    expected = (
        "larger than 1,048,576 bytes (1 MiB), the most a scenario file may be; a scenario is a "
        "few kilobytes: keep object texts short (at most 65,536 bytes each)"
    )
    with pytest.raises(BadInput) as raised:
        read_source(str(too_big))
    assert raised.value.message == f"{too_big}: {expected}"
    # A text that did not come from a file (one stored with a run) is held to the same cap, in
    # bytes: two-byte characters count twice.
    assert error_of(_padded(MAX_SCENARIO_BYTES + 1)) == expected
    assert error_of("é" * (MAX_SCENARIO_BYTES // 2 + 1)) == expected


def test_an_objects_text_is_at_most_64_kib() -> None:
    from job.scenario_file import MAX_OBJECT_BYTES

    assert MAX_OBJECT_BYTES == 64 * 1024
    document = seed_document()
    objects = document["buckets"]["data"]["objects"]
    objects["probe/fixture.txt"] = "x" * MAX_OBJECT_BYTES
    validate(_source(document))
    objects["probe/fixture.txt"] = "é" * (MAX_OBJECT_BYTES // 2 + 1)  # counted in bytes
    assert error_of(document) == (
        "buckets.data.objects.probe/fixture.txt: the text is 65,538 bytes; an object's text is at "
        "most 65,536 (64 KiB): a probe needs only a line"
    )


# No cell whose answer cannot mean what it says


@pytest.mark.parametrize("result", ["allow", "deny"])
def test_reading_an_object_the_scenario_does_not_create_is_refused(result: str) -> None:
    """S3 answers 403 AccessDenied, not 404, for a missing key to a caller without s3:ListBucket:
    a "deny" would pass whatever the policy says, an "allow" would read as denied.
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)"""
    document = seed_document()
    # The writer's own put aims here: a key a cell writes is not one the scenario creates (a
    # denied put leaves nothing).
    missing = document["expect"][0]["resource"]
    assert missing == "bucket:data/probe/writer-putobject.txt"
    document["expect"].append(
        {"principal": "reader", "action": "s3:GetObject", "resource": missing, "result": result}
    )
    assert error_of(document) == (
        "expect[12]: reader s3:GetObject bucket:data/probe/writer-putobject.txt: the scenario "
        "creates no object there, and S3 answers 403 AccessDenied, not 404, for a missing key "
        "when the caller lacks s3:ListBucket, so a deny here cannot be told from a missing "
        "object; create the object under buckets.data.objects or aim the cell at a key the "
        "scenario creates"
    )
    document["buckets"]["data"]["objects"]["probe/writer-putobject.txt"] = "now it exists"
    validate(_source(document))


def test_only_probes_that_read_an_object_need_it_to_exist() -> None:
    # S3 answers a missing key as it answers a denial, to a caller without s3:ListBucket, for
    # each of these. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectTagging.html
    assert {action for action, probe in PROBES.items() if probe.reads_object} == {
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:PutObjectTagging",
    }
    tagging = seed_document()
    tagging["expect"][1]["action"] = "s3:PutObjectTagging"
    tagging["expect"][1]["resource"] = "bucket:data/probe/missing.txt"
    assert "the scenario creates no object there" in error_of(tagging)
    # A delete of a missing key is what the seed does on purpose (nothing is destroyed).
    document = seed_document()
    assert document["expect"][2]["resource"] == "bucket:data/probe/writer-deleteobject.txt"
    validate(_source(document))


# Groups


def _with_group(document: dict[str, Any], **group: Any) -> dict[str, Any]:
    """The seed with a group "team" (as given) that the writer is in."""
    document["groups"] = {"team": group}
    document["users"]["writer"]["groups"] = ["team"]
    return document


GROUP_BAD = [
    pytest.param(
        lambda d: d["users"]["writer"].update(groups=["admins"]),
        'users.writer.groups[0]: unknown group "admins"; the groups are: none',
        id="no groups",
    ),
    pytest.param(
        lambda d: _with_group(d)["users"]["reader"].update(groups=["teams"]),
        'users.reader.groups[0]: unknown group "teams"; the groups are: team',
        id="unknown group",
    ),
    pytest.param(
        lambda d: _with_group(d)["expect"][3].update(principal="team"),
        'expect[3].principal: "team" is a group, which has no credentials to prove anything '
        "with; name a user in it (users.NAME.groups)",
        id="a cell naming a group",
    ),
    pytest.param(
        lambda d: d.update(groups={"writer": {}}),
        "groups.writer: the name is taken by users.writer; names are unique",
        id="group and user",
    ),
    pytest.param(
        lambda d: _with_group(d)["buckets"].update({"team-policy": {}}),
        "buckets.team-policy: the name is taken by groups.team's policy",
        id="a group's derived name",
    ),
    pytest.param(
        lambda d: _with_group(d)["buckets"].update({"team-managed-3": {}}),
        "buckets.team-managed-3: the name is taken by groups.team's managed policy attachments",
        id="a group's managed attachment name",
    ),
    pytest.param(
        lambda d: _with_group(d)["buckets"].update({"writer-group-0": {}}),
        "buckets.writer-group-0: the name is taken by users.writer's group memberships",
        id="a membership's name",
    ),
    pytest.param(
        lambda d: _with_group(d, boundary="arn:aws:iam::aws:policy/ReadOnlyAccess"),
        "groups.team: Additional properties are not allowed ('boundary' was unexpected)",
        id="a group has no boundary",
    ),
    pytest.param(
        lambda d: d.update(roles={"analyst": {"groups": []}}),
        "roles.analyst: Additional properties are not allowed ('groups' was unexpected)",
        id="a role is in no group",
    ),
    pytest.param(
        lambda d: _with_group(
            d, managed_policies=[f"arn:aws:iam::aws:policy/P{n}" for n in range(10)]
        ),
        "groups.team.managed_policies: 10 policies and the group's own are more than the 10 IAM"
        " attaches to one group",
        id="too many managed policies",
    ),
    pytest.param(
        lambda d: _with_group(
            d, policy=[{"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["bucket:x"]}]
        ),
        'groups.team.policy[0].resources[0]: unknown bucket "x"; the buckets are: data, elsewhere',
        id="a group's policy names an unknown bucket",
    ),
    pytest.param(
        lambda d: d["users"]["writer"].update(groups=[f"g{n}" for n in range(11)]),
        "users.writer.groups: ['g0', 'g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8', 'g9', 'g10']"
        " is too long",
        id="in more groups than IAM allows",
    ),
]


@pytest.mark.parametrize(("change", "expected"), GROUP_BAD)
def test_a_bad_group_is_one_line_naming_the_place(change: Any, expected: str) -> None:
    document = seed_document()
    change(document)
    assert error_of(document) == expected


def test_a_group_compiles_to_a_group_its_policies_and_its_users_memberships() -> None:
    scenario = compile_source(
        ScenarioSource((ROOT / "examples" / "groups.yaml").read_text(), "t"), naming()
    )
    by_name = {spec.logical_name: spec for spec in scenario.resources}
    group = by_name["analysts"]
    assert (group.kind, group.name) == (ResourceKind.IAM_GROUP, f"job-{RUN_ID}-analysts")
    policy_arn = f"arn:aws:iam::123456789012:policy/job/job-{RUN_ID}-analysts"
    assert (
        read_as(by_name["analysts-policy"].attributes, PolicyAttributes).document["Statement"][0][
            "Resource"
        ]
        == f"arn:aws:s3:::job-{RUN_ID}-reports/monthly/*"
    )
    own = by_name["analysts-attachment"]
    assert own.kind is ResourceKind.IAM_GROUP_POLICY_ATTACHMENT
    assert read_as(own.attributes, GroupPolicyAttachmentAttributes) == (
        GroupPolicyAttachmentAttributes(group_name=f"job-{RUN_ID}-analysts", policy_arn=policy_arn)
    )
    assert own.needs == ("analysts", "analysts-policy")
    managed = read_as(by_name["analysts-managed-0"].attributes, GroupPolicyAttachmentAttributes)
    assert managed.policy_arn == "arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    assert by_name["analysts-managed-0"].needs == ("analysts",)
    memberships = {
        spec.logical_name: (read_as(spec.attributes, GroupMembershipAttributes), spec.needs)
        for spec in scenario.resources
        if spec.kind is ResourceKind.IAM_GROUP_MEMBERSHIP
    }
    in_analysts = f"job-{RUN_ID}-analysts"
    assert memberships == {
        "ana-group-0": (
            GroupMembershipAttributes(user_name=f"job-{RUN_ID}-ana", group_name=in_analysts),
            ("ana", "analysts"),
        ),
        "ben-group-0": (
            GroupMembershipAttributes(user_name=f"job-{RUN_ID}-ben", group_name=in_analysts),
            ("ben", "analysts"),
        ),
    }
    # A group is not a principal: verify makes keys for the users only.
    assert set(scenario.principals) == {"ana", "ben", "contractor"}
    assert ResourceKind.IAM_GROUP_MEMBERSHIP in scenario_kinds(scenario)


def test_the_runner_policy_grants_groups_on_the_jobs_group_arns_only() -> None:
    scenario = compile_source(
        ScenarioSource((ROOT / "examples" / "groups.yaml").read_text(), "t"), naming()
    )
    statements = {
        s["Sid"]: s for s in runner_policy("team", kinds=scenario_kinds(scenario))["Statement"]
    }
    groups = statements["JobGroups"]
    assert groups["Resource"] == "arn:aws:iam::*:group/job/team-*"
    assert set(groups["Action"]) == {
        "iam:AddUserToGroup",
        "iam:AttachGroupPolicy",
        "iam:CreateGroup",
        "iam:DeleteGroup",
        "iam:DeleteGroupPolicy",
        "iam:DetachGroupPolicy",
        "iam:GetGroup",
        "iam:ListAttachedGroupPolicies",
        "iam:ListGroupPolicies",
        "iam:RemoveUserFromGroup",
    }
    # Nothing of groups elsewhere but the sweep's listing, and the policies' detaching.
    elsewhere = {
        action
        for sid, statement in statements.items()
        if sid != "JobGroups"
        for action in statement["Action"]
        if "Group" in action
    }
    assert elsewhere == {"iam:ListGroups", "iam:ListGroupsForUser", "iam:DetachGroupPolicy"}
    assert "iam:ListGroups" in statements["Unscoped"]["Action"]
    # A scenario without groups is granted no group write.
    seed = runner_policy("team", kinds=scenario_kinds(compile_source(seed_source(), naming())))
    assert "JobGroups" not in {s["Sid"] for s in seed["Statement"]}
