"""AWS's documented policy evaluation logic (job.policy_evaluation), one table per rule, each
citing the page of the IAM User Guide it holds to. These are what the emulator answers instead of
moto, so every row is a place where moto answers otherwise or not at all."""

from __future__ import annotations

from typing import Any

import pytest

from job.policy_evaluation import Decision, Request, decide, matches
from job.policy_language import PolicyError, read_document

ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/job/alice"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/job/analyst"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/analyst/job"
OBJECT = "arn:aws:s3:::data/reports/q1.csv"
BUCKET = "arn:aws:s3:::data"

ALLOW, EXPLICIT, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY


def policy(*statements: dict[str, Any], resource_policy: bool = False) -> Any:
    return read_document(
        {"Version": "2012-10-17", "Statement": list(statements)}, resource_policy=resource_policy
    )


def allow(action: Any = "s3:GetObject", resource: Any = OBJECT, **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any = "s3:GetObject", resource: Any = OBJECT, **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def request(
    action: str = "s3:GetObject",
    resource: str = OBJECT,
    principal: str = USER,
    role: str | None = None,
    **context: Any,
) -> Request:
    return Request(
        action,
        resource,
        principal,
        ACCOUNT,
        role,
        {key.replace("__", ":").replace("_", "/"): value for key, value in context.items()},
    )


# "How AWS enforcement code logic evaluates requests": denied by default; an explicit deny in any
# policy overrides any allow.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ([], IMPLICIT),
        ([policy(allow())], ALLOW),
        ([policy(allow("s3:PutObject"))], IMPLICIT),
        ([policy(allow(), deny())], EXPLICIT),
        ([policy(allow()), policy(deny())], EXPLICIT),
        ([policy(allow(resource="arn:aws:s3:::other/*"))], IMPLICIT),
    ],
)
def test_denied_by_default_and_an_explicit_deny_wins(identity: Any, expected: Decision) -> None:
    assert decide(request(), identity=identity) is expected


# "IAM JSON policy elements: Action" (case-insensitive, wildcards), "NotAction", "Resource"
# (case-sensitive), "NotResource".
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (allow("S3:getobject"), ALLOW),
        (allow("s3:Get*"), ALLOW),
        (allow("s3:?etObject"), ALLOW),
        (allow("*"), ALLOW),
        (allow("s3:Put*"), IMPLICIT),
        (allow("s3:GetObject", "arn:aws:s3:::DATA/*"), IMPLICIT),
        ({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}, ALLOW),
        ({"Effect": "Allow", "NotAction": ["s3:GetObject"], "Resource": "*"}, IMPLICIT),
        ({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::other/*"}, ALLOW),
        ({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::data/*"}, IMPLICIT),
    ],
)
def test_actions_ignore_case_resources_do_not(statement: Any, expected: Decision) -> None:
    assert decide(request(), identity=[policy(statement)]) is expected


# "Condition operators": a missing key makes a condition false, but true for a negated operator;
# ...IfExists is true when it is missing; Null tests presence.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        ({"StringEquals": {"s3:prefix": "raw/"}}, {"s3:prefix": ["raw/"]}, True),
        ({"StringEquals": {"s3:prefix": "raw/"}}, {"s3:prefix": ["Raw/"]}, False),
        ({"StringEquals": {"s3:prefix": "raw/"}}, {}, False),
        ({"StringNotEquals": {"s3:prefix": "raw/"}}, {}, True),
        ({"StringNotEquals": {"s3:prefix": ["raw/", "tmp/"]}}, {"s3:prefix": ["tmp/"]}, False),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "RAW/"}}, {"s3:prefix": ["raw/"]}, True),
        ({"StringLike": {"s3:prefix": "raw/*"}}, {"s3:prefix": ["raw/2026/"]}, True),
        ({"StringNotLike": {"s3:prefix": "raw/*"}}, {"s3:prefix": ["raw/2026/"]}, False),
        ({"StringEqualsIfExists": {"s3:prefix": "raw/"}}, {}, True),
        ({"StringEqualsIfExists": {"s3:prefix": "raw/"}}, {"s3:prefix": ["x/"]}, False),
        # Keys are matched without regard to case, values with it.
        ({"StringEquals": {"S3:Prefix": "raw/"}}, {"s3:prefix": ["raw/"]}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": ["false"]}, True),
        ({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": ["true"]}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {}, False),
        ({"Null": {"aws:PrincipalTag/team": "true"}}, {}, True),
        ({"Null": {"aws:PrincipalTag/team": "false"}}, {}, False),
        ({"Null": {"aws:PrincipalTag/team": "false"}}, {"aws:PrincipalTag/team": ["a"]}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["5"]}, True),
        ({"NumericLessThan": {"s3:max-keys": 10}}, {"s3:max-keys": ["50"]}, False),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["many"]}, False),
        (
            {"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}},
            {"aws:CurrentTime": ["2026-12-06T22:00:00Z"]},
            True,
        ),
        ({"DateGreaterThan": {"aws:EpochTime": "100"}}, {"aws:EpochTime": ["99"]}, False),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": ["10.1.2.3"]}, True),
        ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": ["10.1.2.3"]}, False),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": ["192.0.2.1"]}, False),
        (
            {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/job/*"}},
            {"aws:PrincipalArn": [USER]},
            True,
        ),
        (
            {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
            {"aws:PrincipalArn": [USER]},
            True,
        ),
        ({"BinaryEquals": {"k": "aGk="}}, {"k": ["aGk="]}, True),
    ],
)
def test_condition_operators(condition: Any, context: Any, holds: bool) -> None:
    statement = allow(Condition=condition)
    answer = decide(
        Request("s3:GetObject", OBJECT, USER, ACCOUNT, None, context), identity=[policy(statement)]
    )
    assert (answer is ALLOW) is holds


# "Set operators for multivalued context keys": ForAllValues holds for a missing or empty key
# and when every value matches; ForAnyValue when any does, never for a missing key.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
@pytest.mark.parametrize(
    ("operator", "values", "holds"),
    [
        ("ForAllValues:StringEquals", ["team", "env"], True),
        ("ForAllValues:StringEquals", ["team", "owner"], False),
        ("ForAllValues:StringEquals", None, True),
        ("ForAnyValue:StringEquals", ["owner", "env"], True),
        ("ForAnyValue:StringEquals", ["owner"], False),
        ("ForAnyValue:StringEquals", None, False),
        ("ForAllValues:StringNotEquals", ["owner"], True),
        ("ForAnyValue:StringNotEquals", ["team", "owner"], True),
        ("ForAnyValue:StringNotEquals", ["team"], False),
    ],
)
def test_set_operators(operator: str, values: list[str] | None, holds: bool) -> None:
    statement = allow(Condition={operator: {"aws:TagKeys": ["team", "env"]}})
    context = {} if values is None else {"aws:TagKeys": values}
    answer = decide(
        Request("s3:GetObject", OBJECT, USER, ACCOUNT, None, context), identity=[policy(statement)]
    )
    assert (answer is ALLOW) is holds


# "Condition": every operator and every key of a statement must hold; a key's values are
# alternatives. And a statement whose condition does not hold does not apply: for an Allow that
# is not a deny (moto answers an explicit deny), so another statement may still allow.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
def test_conditions_are_anded_values_ored_and_an_unmet_allow_just_does_not_apply() -> None:
    both = allow(
        Condition={
            "StringEquals": {"s3:prefix": ["raw/", "tmp/"], "s3:delimiter": "/"},
            "Bool": {"aws:SecureTransport": "true"},
        }
    )
    context = {"s3:prefix": ["tmp/"], "s3:delimiter": ["/"], "aws:SecureTransport": ["true"]}
    assert (
        decide(
            Request("s3:GetObject", OBJECT, USER, ACCOUNT, None, context), identity=[policy(both)]
        )
        is ALLOW
    )
    context["aws:SecureTransport"] = ["false"]
    unmet = Request("s3:GetObject", OBJECT, USER, ACCOUNT, None, context)
    assert decide(unmet, identity=[policy(both)]) is IMPLICIT
    assert decide(unmet, identity=[policy(both, allow())]) is ALLOW


# "IAM policy elements: Variables and tags": ${aws:username} stands for the caller's value; a
# variable with no value makes the element match nothing.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
def test_policy_variables() -> None:
    home = allow(resource="arn:aws:s3:::data/home/${aws:username}/*")
    mine = Request(
        "s3:GetObject",
        "arn:aws:s3:::data/home/alice/a",
        USER,
        ACCOUNT,
        None,
        {"aws:username": ["alice"]},
    )
    assert decide(mine, identity=[policy(home)]) is ALLOW
    theirs = Request(
        "s3:GetObject",
        "arn:aws:s3:::data/home/bob/a",
        USER,
        ACCOUNT,
        None,
        {"aws:username": ["alice"]},
    )
    assert decide(theirs, identity=[policy(home)]) is IMPLICIT
    nobody = Request("s3:GetObject", "arn:aws:s3:::data/home//a", USER, ACCOUNT)
    assert decide(nobody, identity=[policy(home)]) is IMPLICIT
    assert matches("${*}", "${*}") and not matches("a?c", "abbc")


# "Permissions boundaries for IAM entities": the effective permissions are where the identity
# policies and the boundary both allow; "Session policies": likewise with the session policy.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
@pytest.mark.parametrize(
    ("boundary", "session", "expected"),
    [
        (None, None, ALLOW),
        (policy(allow("s3:*", "*")), None, ALLOW),
        (policy(allow("s3:PutObject")), None, IMPLICIT),
        (None, policy(allow("s3:Get*", "*")), ALLOW),
        (None, policy(allow("s3:PutObject")), IMPLICIT),
        (policy(allow("s3:*", "*")), policy(allow("s3:PutObject")), IMPLICIT),
        (policy(allow("s3:*", "*"), deny()), None, EXPLICIT),
    ],
)
def test_a_boundary_and_a_session_policy_cut_identity_permissions_down(
    boundary: Any, session: Any, expected: Decision
) -> None:
    decision = decide(
        request(principal=SESSION, role=ROLE),
        identity=[policy(allow("s3:*", "*"))],
        boundary=boundary,
        session=session,
    )
    assert decision is expected


def bucket_policy(principal: Any, effect: str = "Allow", **more: Any) -> Any:
    statement = {
        "Effect": effect,
        "Principal": principal,
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::data/*",
        **more,
    }
    return policy(statement, resource_policy=True)


# "Policy evaluation for requests within a single account": an Allow in either the identity or
# the resource policy is enough; a resource policy naming the user's ARN or the role session's is
# not limited by an implicit deny in the identity policy, boundary or session policy; naming the
# role's ARN, it is limited by the boundary and the session policy; naming the account, the
# identity policies must allow. An explicit deny in the resource policy is final.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
@pytest.mark.parametrize(
    ("principal", "caller", "role", "identity", "boundary", "expected"),
    [
        ({"AWS": USER}, USER, None, [], None, ALLOW),
        ({"AWS": USER}, USER, None, [], policy(allow("s3:PutObject")), ALLOW),
        ({"AWS": [SESSION]}, SESSION, ROLE, [], policy(allow("s3:PutObject")), ALLOW),
        ({"AWS": ROLE}, SESSION, ROLE, [], None, ALLOW),
        ({"AWS": ROLE}, SESSION, ROLE, [], policy(allow("s3:PutObject")), IMPLICIT),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, USER, None, [], None, IMPLICIT),
        ({"AWS": ACCOUNT}, USER, None, [policy(allow())], None, ALLOW),
        ("*", USER, None, [], None, ALLOW),
        ({"AWS": "arn:aws:iam::999999999999:user/eve"}, USER, None, [], None, IMPLICIT),
    ],
)
def test_a_resource_policy_grants_by_whom_it_names(
    principal: Any, caller: str, role: str | None, identity: Any, boundary: Any, expected: Decision
) -> None:
    decision = decide(
        request(principal=caller, role=role),
        identity=identity,
        boundary=boundary,
        resource=bucket_policy(principal),
    )
    assert decision is expected


def test_a_resource_policys_deny_is_final_and_its_conditions_count() -> None:
    everyone_but_tls = bucket_policy(
        "*", effect="Deny", Condition={"Bool": {"aws:SecureTransport": "false"}}
    )
    identity = [policy(allow())]
    plain = request(aws__SecureTransport=["false"])
    tls = request(aws__SecureTransport=["true"])
    assert decide(plain, identity=identity, resource=everyone_but_tls) is EXPLICIT
    assert decide(tls, identity=identity, resource=everyone_but_tls) is ALLOW
    # NotPrincipal: the deny applies to all but those named.
    not_alice = policy(
        {"Effect": "Deny", "NotPrincipal": {"AWS": USER}, "Action": "s3:*", "Resource": "*"},
        resource_policy=True,
    )
    assert decide(request(), identity=identity, resource=not_alice) is ALLOW
    other = request(principal=f"arn:aws:iam::{ACCOUNT}:user/job/bob")
    assert decide(other, identity=identity, resource=not_alice) is EXPLICIT


# What IAM refuses in a document, with the place ("IAM JSON policy element reference").
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html
@pytest.mark.parametrize(
    ("statement", "where", "message"),
    [
        ({"Effect": "Permit", "Action": "s3:*", "Resource": "*"}, "Statement[0].Effect", "Allow"),
        ({"Effect": "Allow", "Resource": "*"}, "Statement[0]", "no Action"),
        (
            {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
            "Statement[0]",
            "both Action and NotAction",
        ),
        ({"Effect": "Allow", "Action": "s3:*"}, "Statement[0]", "no Resource"),
        ({"Effect": "Allow", "Action": "GetObject", "Resource": "*"}, "Action[0]", "not an act"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "bucket"}, "Resource[0]", "not an ARN"),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"},
            "Statement[0].Principal",
            "names no principal",
        ),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StrEq": {}}},
            "Condition.StrEq",
            "unknown condition operator",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"ForSomeValues:StringEquals": {"k": "v"}},
            },
            "Condition.ForSomeValues:StringEquals",
            "unknown set qualifier",
        ),
        ({"Sid": "no spaces", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}, "Sid", "Sid"),
    ],
)
def test_what_iam_refuses_is_refused_with_its_place(
    statement: Any, where: str, message: str
) -> None:
    with pytest.raises(PolicyError) as refused:
        policy(statement)
    assert where in refused.value.where and message in refused.value.message
