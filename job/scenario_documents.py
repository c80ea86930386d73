"""Policy documents written in a scenario file as IAM writes them, with the scenario's references
resolved and checked as IAM would check them (job.policy_language).

A principal's `policy` is either the short form (a list of `{effect, actions, resources}`) or an
IAM policy document, pasted as it is: `Version`, `Statement` (an object or a list), `Sid`,
`Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`, each a string or a list.
Inside a document, wherever an ARN goes (`Resource`, `NotResource`, condition values), these
references stand for the run's own resources:

    bucket:NAME       the bucket's ARN           bucket:NAME/KEY  an object's (KEY: a pattern too)
    principal:NAME    the user's or role's ARN   role:NAME        the role's ARN

Everything else goes to IAM unchanged, conditions included: what they mean is AWS's to decide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeGuard

from job.config import MAX_PREFIX_LENGTH
from job.naming import RUN_ID_LENGTH, Naming
from job.policy_language import (
    MAX_MANAGED_POLICY_CHARACTERS,
    PolicyError,
    policy_size,
    read_document,
)

BUCKET_REF, PRINCIPAL_REF, ROLE_REF = "bucket:", "principal:", "role:"
REFERENCES = (BUCKET_REF, PRINCIPAL_REF, ROLE_REF)
# The longest names a run can give: a scenario valid under these fits under any prefix and id.
WORST_CASE_NAMING = Naming("x" * MAX_PREFIX_LENGTH, "a" * RUN_ID_LENGTH, "123456789012", "aws-cn")
# The document elements whose strings are ARNs (or patterns of them).
_ARN_ELEMENTS = ("Resource", "NotResource")


class UnknownReference(ValueError):
    pass


def is_document(policy: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether a principal's `policy` is written as an IAM document (not the short form)."""
    return isinstance(policy, Mapping)


def resolver(
    naming: Naming, buckets: Mapping[str, Any], principals: Mapping[str, str]
) -> Callable[[str], str]:
    """What a reference stands for in a run named by `naming`: `principals` maps each user's and
    role's logical name to its section ("users", "roles"). Anything not a reference is itself;
    a reference to a name the scenario does not define is UnknownReference."""

    def resolve(value: str) -> str:
        if value.startswith(BUCKET_REF):
            bucket, slash, key = value.removeprefix(BUCKET_REF).partition("/")
            if bucket not in buckets:
                defined = ", ".join(sorted(buckets)) or "none"
                raise UnknownReference(f'unknown bucket "{bucket}"; the buckets are: {defined}')
            return naming.s3_arn(naming.name(bucket), key if slash else None)
        for reference, sections in ((PRINCIPAL_REF, ("users", "roles")), (ROLE_REF, ("roles",))):
            if value.startswith(reference):
                name = value.removeprefix(reference)
                if principals.get(name) not in sections:
                    wanted = [n for n, section in principals.items() if section in sections]
                    what = "role" if reference == ROLE_REF else "user or role"
                    raise UnknownReference(
                        f'unknown {what} "{name}"; they are: {", ".join(sorted(wanted)) or "none"}'
                    )
                kind = "user" if principals[name] == "users" else "role"
                return naming.iam_arn(kind, naming.name(name))
        return value

    return resolve


def _resolved_strings(value: Any, resolve: Callable[[str], str], where: str) -> Any:
    if isinstance(value, str):
        try:
            return resolve(value)
        except UnknownReference as error:
            raise PolicyError(where, str(error)) from None
    if isinstance(value, list):
        return [_resolved_strings(item, resolve, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def resolve_document(document: Mapping[str, Any], resolve: Callable[[str], str]) -> dict[str, Any]:
    """The document with its references resolved where ARNs go; the rest as written."""
    statements = document.get("Statement")
    single = isinstance(statements, Mapping)
    resolved_statements = []
    for index, statement in enumerate([statements] if single else list(statements or [])):
        where = "Statement" if single else f"Statement[{index}]"
        if not isinstance(statement, Mapping):
            resolved_statements.append(statement)
            continue
        resolved = dict(statement)
        for element in _ARN_ELEMENTS:
            if element in resolved:
                resolved[element] = _resolved_strings(
                    resolved[element], resolve, f"{where}.{element}"
                )
        if isinstance(resolved.get("Condition"), Mapping):
            resolved["Condition"] = {
                operator: (
                    {
                        key: _resolved_strings(
                            value, resolve, f"{where}.Condition.{operator}.{key}"
                        )
                        for key, value in keys.items()
                    }
                    if isinstance(keys, Mapping)
                    else keys
                )
                for operator, keys in resolved["Condition"].items()
            }
        resolved_statements.append(resolved)
    return {**document, "Statement": resolved_statements[0] if single else resolved_statements}


def document_errors(
    where: str,
    document: Mapping[str, Any],
    buckets: Mapping[str, Any],
    principals: Mapping[str, str],
) -> Iterator[str]:
    """What IAM would refuse in a principal's document, under the longest names a run can give,
    each with its place in the file."""
    try:
        resolved = resolve_document(document, resolver(WORST_CASE_NAMING, buckets, principals))
        read_document(resolved)
    except PolicyError as error:
        yield (
            f"{where}.{error.where}: {error.message}"
            if error.where
            else f"{where}: {error.message}"
        )
        return
    size = policy_size(json.dumps(resolved))
    if size > MAX_MANAGED_POLICY_CHARACTERS:
        yield (
            f"{where}: the document is {size:,} characters without whitespace (with the longest"
            f" names a run can give); IAM takes at most {MAX_MANAGED_POLICY_CHARACTERS:,} in a"
            " managed policy"
        )
