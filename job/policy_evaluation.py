"""AWS's policy evaluation logic for a request within one account, as the IAM User Guide documents
it, for the emulator (moto decides otherwise: see `decide`'s callers in job.emulator).

The rules, each held by a table-driven test that cites it (tests/unit/test_policy_evaluation.py):
- "Policy evaluation logic" and "How AWS enforcement code logic evaluates requests to allow or deny
  access": every request is denied by default; an explicit Deny in any applicable policy
  (resource-based, identity-based, permissions boundary, session policy) is final; otherwise a
  resource-based policy's Allow, an identity-based policy's Allow, and the boundary's and session
  policy's Allows decide as `decide` says.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
- "Policy evaluation for requests within a single account": in one account, an Allow in either the
  identity-based or the resource-based policy is enough; a resource policy that names the IAM user's
  ARN or the role session's ARN is not limited by an implicit deny in the identity policy, the
  boundary or the session policy, while one that names the role's ARN still is by the boundary and
  the session policy.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
- "Condition operators": a key missing from the request context makes a condition false, but true
  for a negated operator (StringNotEquals, ArnNotLike...); ...IfExists is true when the key is
  missing; Null tests presence; ForAllValues is true for a missing key, ForAnyValue false.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
- "Condition": within one statement every operator, and every key of an operator, must hold; the
  values of one key are alternatives.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
- Actions are matched without regard to case, resources with it; `*` and `?` are wildcards in both.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html

Organizations' SCPs and RCPs are not modelled: the emulator has no organization.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from job.policy_language import Condition, Statement


class Decision(enum.StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Request:
    """What is asked, by whom, with its request context (condition keys, each to its values)."""

    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*"
    # The caller as a resource policy names it: an IAM user's ARN, or a role session's
    # (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION).
    principal: str
    account: str
    # The role's own ARN, for a role session (a resource policy may name it instead).
    role: str | None = None
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def values(self, key: str) -> Sequence[str] | None:
        """The context's values for `key`, whose name is matched without regard to case."""
        wanted = key.lower()
        for name, values in self.context.items():
            if name.lower() == wanted:
                return values
        return None


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` any one."""
    return _glob(pattern, ignore_case).fullmatch(value) is not None


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(text: str, request: Request) -> str | None:
    """`${aws:username}` and the like replaced by the request's value; `${*}`, `${?}` and `${$}`
    are the literal characters. None when a variable has no single value in the request (the
    element then matches nothing)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        values = request.values(name)
        if not values or len(values) != 1:
            missing = True
            return ""
        return values[0]

    replaced = _VARIABLE.sub(value, text)
    return None if missing else replaced


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    """ISO 8601, or seconds since the epoch (both are accepted by the Date operators)."""
    if re.fullmatch(r"\d+", text):
        return datetime.fromtimestamp(int(text), UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare_numbers(test: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def compare(actual: str, wanted: str) -> bool:
        a, w = _number(actual), _number(wanted)
        return a is not None and w is not None and test(a, w)

    return compare


def _compare_dates(test: Callable[[datetime, datetime], bool]) -> Callable[[str, str], bool]:
    def compare(actual: str, wanted: str) -> bool:
        a, w = _date(actual), _date(wanted)
        return a is not None and w is not None and test(a, w)

    return compare


def _in_network(actual: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


def _arn_like(actual: str, wanted: str) -> bool:
    """Each of the ARN's six parts is matched on its own (a wildcard does not span a colon but in
    the last part, which may hold colons)."""
    a, w = actual.split(":", 5), wanted.split(":", 5)
    return len(a) == len(w) == 6 and all(matches(p, v) for p, v in zip(w, a, strict=True))


def _binary_equals(actual: str, wanted: str) -> bool:
    try:
        return base64.b64decode(actual, validate=True) == base64.b64decode(wanted, validate=True)
    except (binascii.Error, ValueError):
        return False


# Each operator's positive test (the negated ones are its negation, applied per `_holds`).
_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda a, w: a == w,
    "StringEqualsIgnoreCase": lambda a, w: a.lower() == w.lower(),
    "StringLike": lambda a, w: matches(w, a),
    "NumericEquals": _compare_numbers(lambda a, w: a == w),
    "NumericLessThan": _compare_numbers(lambda a, w: a < w),
    "NumericLessThanEquals": _compare_numbers(lambda a, w: a <= w),
    "NumericGreaterThan": _compare_numbers(lambda a, w: a > w),
    "NumericGreaterThanEquals": _compare_numbers(lambda a, w: a >= w),
    "DateEquals": _compare_dates(lambda a, w: a == w),
    "DateLessThan": _compare_dates(lambda a, w: a < w),
    "DateLessThanEquals": _compare_dates(lambda a, w: a <= w),
    "DateGreaterThan": _compare_dates(lambda a, w: a > w),
    "DateGreaterThanEquals": _compare_dates(lambda a, w: a >= w),
    "Bool": lambda a, w: a.lower() == w.lower(),
    "BinaryEquals": _binary_equals,
    "IpAddress": _in_network,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}
_POSITIVE = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _holds(condition: Condition, request: Request) -> bool:
    operator = condition.operator
    actual = request.values(condition.key)
    present = actual is not None and len(actual) > 0
    if operator.name == "Null":
        # "true": the key must be absent; "false": present.
        return any((value.lower() == "true") != present for value in condition.values)
    if not present:
        if operator.if_exists:
            return True
        if operator.qualifier == "ForAllValues":
            return True
        if operator.qualifier == "ForAnyValue":
            return False
        return operator.negated
    assert actual is not None
    wanted = [
        substituted
        for value in condition.values
        if (substituted := substitute(value, request)) is not None
    ]
    test = _TESTS[_POSITIVE.get(operator.name, operator.name)]

    def one(value: str) -> bool:
        """Whether one of the request's values satisfies the operator."""
        hit = any(test(value, w) for w in wanted)
        return not hit if operator.negated else hit

    if operator.qualifier == "ForAllValues":
        return all(one(value) for value in actual)
    # A single-valued key (and ForAnyValue): any of the request's values will do, and for a
    # negated operator that value must match none of the policy's.
    return any(one(value) for value in actual)


def _covers(patterns: Iterable[str], value: str, request: Request, *, ignore_case: bool) -> bool:
    for pattern in patterns:
        substituted = substitute(pattern, request)
        if substituted is not None and matches(substituted, value, ignore_case=ignore_case):
            return True
    return False


class PrincipalMatch(enum.Enum):
    """Whom a resource policy's statement named, of the request's caller."""

    NONE = 0
    ACCOUNT = 1  # the account: the identity policies must still allow
    ROLE = 2  # the role's ARN: the boundary and session policy still limit it
    DIRECT = 3  # the user's ARN, the role session's, or everyone: nothing else need allow


def _principal_match(statement: Statement, request: Request) -> PrincipalMatch:
    principal = statement.principal
    if principal is None:
        return PrincipalMatch.DIRECT  # an identity policy's statement: its holder's own
    named: list[str] = []
    if principal == "*":
        named = ["*"]
    elif isinstance(principal, Mapping):
        aws = principal.get("AWS", [])
        named = [aws] if isinstance(aws, str) else [str(arn) for arn in aws]
    best = PrincipalMatch.NONE
    for arn in named:
        # "*" is everyone, this caller included, as itself (a public grant needs nothing more).
        if arn in ("*", request.principal):
            found = PrincipalMatch.DIRECT
        elif request.role is not None and arn == request.role:
            found = PrincipalMatch.ROLE
        elif arn == request.account or arn.endswith(f":iam::{request.account}:root"):
            found = PrincipalMatch.ACCOUNT
        else:
            continue
        best = max(best, found, key=lambda match: match.value)
    if statement.not_principal:
        # NotPrincipal: everyone but those named; whoever is not named is treated as the
        # account's (the identity policies must still allow).
        return PrincipalMatch.NONE if best is not PrincipalMatch.NONE else PrincipalMatch.ACCOUNT
    return best


def applies(statement: Statement, request: Request) -> bool:
    """Whether the statement covers the request: its action, its resource and its conditions
    (not its principal: see _principal_match)."""
    action = _covers(statement.actions, request.action, request, ignore_case=True)
    if action == statement.not_actions:
        return False
    if statement.resources:
        resource = _covers(statement.resources, request.resource, request, ignore_case=False)
        if resource == statement.not_resources:
            return False
    return all(_holds(condition, request) for condition in statement.conditions)


def _allows(policies: Iterable[Sequence[Statement]], request: Request) -> bool:
    return any(
        statement.effect == "Allow" and applies(statement, request)
        for policy in policies
        for statement in policy
    )


def decide(
    request: Request,
    *,
    identity: Sequence[Sequence[Statement]],
    boundary: Sequence[Statement] | None = None,
    session: Sequence[Statement] | None = None,
    resource: Sequence[Statement] | None = None,
) -> Decision:
    """The decision for `request` within its account: `identity` is every identity-based policy
    (inline, managed, the groups'), `boundary` the permissions boundary if one is set, `session`
    the session policy a role session was made with, `resource` the resource's own policy."""
    everything = [*identity, boundary or (), session or ()]
    for policy in everything:
        for statement in policy:
            if statement.effect == "Deny" and applies(statement, request):
                return Decision.EXPLICIT_DENY
    granted = PrincipalMatch.NONE
    for statement in resource or ():
        if not applies(statement, request):
            continue
        named = _principal_match(statement, request)
        if named is PrincipalMatch.NONE:
            continue
        if statement.effect == "Deny":
            return Decision.EXPLICIT_DENY
        granted = max(granted, named, key=lambda match: match.value)
    if granted is PrincipalMatch.DIRECT:
        return Decision.ALLOW
    gates = all(_allows([policy], request) for policy in (boundary, session) if policy is not None)
    if granted is PrincipalMatch.ROLE and gates:
        return Decision.ALLOW
    if _allows(identity, request) and gates:
        return Decision.ALLOW
    return Decision.IMPLICIT_DENY
