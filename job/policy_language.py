"""IAM policy documents as IAM reads them: the grammar of the IAM JSON policy language, read into
statements the rest of the job can reason about (job.policy_evaluation decides requests with them;
job.scenario_file refuses, at validation, what IAM would refuse).

What is held here is IAM's own grammar, from the IAM User Guide:
- "IAM JSON policy element reference" (Version, Id, Statement, Sid, Effect, Principal/NotPrincipal,
  Action/NotAction, Resource/NotResource, Condition): each element that takes values takes a string
  or a list of them, and a statement has exactly one of Action and NotAction, and (in an identity
  policy) exactly one of Resource and NotResource.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html
- "IAM JSON policy elements: Condition operators": the operator names, their ...IfExists forms and
  the ForAllValues:/ForAnyValue: set qualifiers.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
- "IAM and AWS STS quotas": a managed policy is at most 6,144 characters, whitespace not counted.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERSIONS = ("2012-10-17", "2008-10-17")
MAX_MANAGED_POLICY_CHARACTERS = 6144

# Condition operators, by family; each also has an ...IfExists form (but Null), and each may be
# qualified by ForAllValues: or ForAnyValue:.
STRING_OPERATORS = (
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
)
NUMERIC_OPERATORS = (
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
)
DATE_OPERATORS = (
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
)
OTHER_OPERATORS = (
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
)
OPERATORS = STRING_OPERATORS + NUMERIC_OPERATORS + DATE_OPERATORS + OTHER_OPERATORS + ("Null",)
QUALIFIERS = ("ForAllValues", "ForAnyValue")

_SID = re.compile(r"[A-Za-z0-9]*")
# "service:Action", wildcards allowed in the action; or "*".
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
# An ARN's six parts: arn:partition:service:region:account:resource (the last may hold colons).
_ARN = re.compile(r"arn:[a-z*?-]*:[a-z0-9*?-]+:[a-z0-9*?-]*:[0-9*?]*:.+")


class PolicyError(ValueError):
    """What IAM would refuse in a document: `where` is the place in it ("Statement[1].Action")."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Operator:
    """A condition operator as written: "ForAnyValue:StringLikeIfExists" is qualifier
    ForAnyValue, name StringLike, if_exists."""

    name: str
    qualifier: str | None = None
    if_exists: bool = False

    @property
    def negated(self) -> bool:
        """The operators that match when the values do not (StringNotEquals, NotIpAddress...)."""
        return "Not" in self.name

    @classmethod
    def parse(cls, text: str) -> Operator:
        qualifier, colon, rest = text.partition(":")
        if not colon:
            qualifier, rest = "", text
        elif qualifier not in QUALIFIERS:
            raise PolicyError("", f"unknown set qualifier {qualifier!r}; IAM has {QUALIFIERS}")
        name = rest.removesuffix("IfExists")
        if name not in OPERATORS or (name == "Null" and name != rest):
            raise PolicyError("", f"unknown condition operator {text!r}")
        return cls(name, qualifier or None, if_exists=name != rest)


@dataclass(frozen=True)
class Condition:
    operator: Operator
    # As written; matched against the request context without regard to case.
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...]
    # NotAction: the statement covers every action but these.
    not_actions: bool = False
    # () in a trust or resource policy statement with neither (a trust policy's).
    resources: tuple[str, ...] = ("*",)
    not_resources: bool = False
    conditions: tuple[Condition, ...] = ()
    # A resource policy's: {"AWS": [...]} or "*", as written; None in an identity policy.
    principal: Any = None
    not_principal: bool = False
    sid: str | None = None


def _strings(where: str, value: Any) -> tuple[str, ...]:
    """An element that takes a string or a list of them (IAM accepts either)."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise PolicyError(where, "an empty list; IAM needs at least one value")
    for index, item in enumerate(values):
        if not isinstance(item, str):
            place = f"{where}[{index}]" if isinstance(value, list) else where
            raise PolicyError(place, f"{item!r} is not a string")
    return tuple(values)


def _condition_values(where: str, value: Any) -> tuple[str, ...]:
    """Condition values may be written as strings, numbers or booleans (IAM reads them as
    strings: `true` and "true" are the same)."""
    values = value if isinstance(value, list) else [value]
    out = []
    for index, item in enumerate(values):
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            out.append(str(item))
        else:
            place = f"{where}[{index}]" if isinstance(value, list) else where
            raise PolicyError(place, f"{item!r} is not a string, number or boolean")
    return tuple(out)


def _conditions(where: str, block: Any) -> Iterator[Condition]:
    if not isinstance(block, Mapping):
        raise PolicyError(where, "a Condition is an object of operators")
    for written, keys in block.items():
        try:
            operator = Operator.parse(str(written))
        except PolicyError as error:
            raise PolicyError(f"{where}.{written}", error.message) from None
        if not isinstance(keys, Mapping) or not keys:
            raise PolicyError(f"{where}.{written}", "an operator takes an object of keys")
        for key, value in keys.items():
            yield Condition(
                operator, str(key), _condition_values(f"{where}.{written}.{key}", value)
            )


def _one_of(where: str, statement: Mapping[str, Any], names: tuple[str, str]) -> str | None:
    present = [name for name in names if name in statement]
    if len(present) > 1:
        raise PolicyError(where, f"both {names[0]} and {names[1]}; a statement has one of them")
    return present[0] if present else None


def read_statement(
    where: str, statement: Any, *, resource_policy: bool = False, trust_policy: bool = False
) -> Statement:
    """One statement, as IAM would accept it in an identity policy (or, with `resource_policy`,
    a resource policy, which must name a principal; with `trust_policy`, a role's trust)."""
    if not isinstance(statement, Mapping):
        raise PolicyError(where, "a statement is an object")
    known = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if resource_policy or trust_policy:
        known |= {"Principal", "NotPrincipal"}
    for name in statement:
        if name not in known:
            hint = (
                "; an identity policy names no principal (a bucket policy does)"
                if name in ("Principal", "NotPrincipal")
                else f"; a statement has {', '.join(sorted(known))}"
            )
            raise PolicyError(f"{where}.{name}", f"unknown element{hint}")
    sid = statement.get("Sid")
    if sid is not None and (not isinstance(sid, str) or not _SID.fullmatch(sid)):
        raise PolicyError(f"{where}.Sid", "a Sid holds only letters and digits")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}.Effect", 'must be "Allow" or "Deny"')
    action_element = _one_of(where, statement, ("Action", "NotAction"))
    if action_element is None:
        raise PolicyError(where, "no Action or NotAction")
    actions = _strings(f"{where}.{action_element}", statement[action_element])
    for index, action in enumerate(actions):
        if not _ACTION.fullmatch(action):
            raise PolicyError(
                f"{where}.{action_element}[{index}]",
                f'"{action}" is not an action ("service:Action", wildcards allowed, or "*")',
            )
    resource_element = _one_of(where, statement, ("Resource", "NotResource"))
    if resource_element is None and not trust_policy:
        raise PolicyError(where, "no Resource or NotResource")
    resources: tuple[str, ...] = ()
    if resource_element is not None:
        resources = _strings(f"{where}.{resource_element}", statement[resource_element])
        for index, resource in enumerate(resources):
            if resource != "*" and not _ARN.fullmatch(resource):
                raise PolicyError(
                    f"{where}.{resource_element}[{index}]",
                    f'"{resource}" is not an ARN (arn:partition:service:region:account:resource)'
                    ' or "*"',
                )
    principal_element = _one_of(where, statement, ("Principal", "NotPrincipal"))
    if resource_policy and principal_element is None:
        raise PolicyError(where, "no Principal or NotPrincipal; a resource policy names whom")
    conditions = (
        tuple(_conditions(f"{where}.Condition", statement["Condition"]))
        if "Condition" in statement
        else ()
    )
    return Statement(
        effect=str(effect),
        actions=actions,
        not_actions=action_element == "NotAction",
        resources=resources,
        not_resources=resource_element == "NotResource",
        conditions=conditions,
        principal=statement.get(principal_element) if principal_element else None,
        not_principal=principal_element == "NotPrincipal",
        sid=sid,
    )


def read_document(
    document: Any, *, resource_policy: bool = False, trust_policy: bool = False
) -> list[Statement]:
    """A policy document's statements: PolicyError, with its place, for what IAM would refuse."""
    if not isinstance(document, Mapping):
        raise PolicyError("", "a policy document is an object")
    for name in document:
        if name not in ("Version", "Id", "Statement"):
            raise PolicyError(name, "unknown element; a document has Version, Id and Statement")
    if "Version" in document and document["Version"] not in VERSIONS:
        raise PolicyError("Version", f"must be one of {', '.join(VERSIONS)}")
    if "Statement" not in document:
        raise PolicyError("", "no Statement")
    statements: Sequence[Any] = document["Statement"]
    if isinstance(statements, Mapping):
        return [
            read_statement(
                "Statement", statements, resource_policy=resource_policy, trust_policy=trust_policy
            )
        ]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("Statement", "an object or a non-empty list of them")
    return [
        read_statement(
            f"Statement[{index}]",
            statement,
            resource_policy=resource_policy,
            trust_policy=trust_policy,
        )
        for index, statement in enumerate(statements)
    ]


def policy_size(text: str) -> int:
    """A policy's size as IAM counts it against its quota: whitespace is not counted."""
    return sum(1 for character in text if not character.isspace())
