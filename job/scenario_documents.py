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
    Statement,
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
    naming: Naming,
    buckets: Mapping[str, Any],
    principals: Mapping[str, str],
    existing: Mapping[str, str] | None = None,
) -> Callable[[str], str]:
    """What a reference stands for in a run named by `naming`: `principals` maps each user's and
    role's logical name to its section ("users", "roles"), and `existing` an existing role's to its
    ARN (roles.NAME.existing). Anything not a reference is itself; a reference to a name the
    scenario does not define is UnknownReference."""
    existing = existing or {}

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
                if name in existing:
                    return existing[name]
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
        for element in ("Principal", "NotPrincipal"):
            principal = resolved.get(element)
            if isinstance(principal, Mapping) and "AWS" in principal:
                resolved[element] = {
                    **principal,
                    "AWS": _resolved_strings(principal["AWS"], resolve, f"{where}.{element}.AWS"),
                }
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


# A bucket policy is at most 20 KB.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/BucketRestrictions.html
MAX_BUCKET_POLICY_BYTES = 20 * 1024
# The Sid of the job's own statement in every bucket policy it writes (job.aws.s3).
LOCK_DOWN_SID = "DenyWithoutTLS"


def named_principals(document: Mapping[str, Any], resolve: Callable[[str], str]) -> list[str]:
    """The ARNs of the run's users and roles a bucket policy names (as principal:NAME or
    role:NAME), in the order written: the bucket is made after them."""
    named: list[str] = []
    statements = document.get("Statement")
    for statement in [statements] if isinstance(statements, Mapping) else statements or []:
        for element in ("Principal", "NotPrincipal"):
            principal = statement.get(element) if isinstance(statement, Mapping) else None
            if not isinstance(principal, Mapping):
                continue
            values = principal.get("AWS", [])
            for value in [values] if isinstance(values, str) else values:
                if isinstance(value, str) and value.startswith((PRINCIPAL_REF, ROLE_REF)):
                    arn = resolve(value)
                    if arn not in named:
                        named.append(arn)
    return named


def _placed(where: str, error: PolicyError) -> str:
    """The error, at its place in the file (`where`, then its place in the document)."""
    return f"{where}.{error.where}: {error.message}" if error.where else f"{where}: {error.message}"


def _opens_publicly(statement: Statement) -> bool:
    """An Allow for everyone ("*", {"AWS": "*"}) or for all but some (NotPrincipal)."""
    if statement.effect != "Allow":
        return False
    if statement.not_principal or statement.principal == "*":
        return True
    named = statement.principal.get("AWS", []) if isinstance(statement.principal, Mapping) else []
    return "*" in ([named] if isinstance(named, str) else named)


def bucket_policy_errors(
    where: str,
    bucket: str,
    document: Mapping[str, Any],
    buckets: Mapping[str, Any],
    principals: Mapping[str, str],
) -> Iterator[str]:
    """What S3 would refuse in a bucket's policy, and what the job refuses: opening the bucket
    to everyone (the job blocks public access to its buckets, and its lock-down must not be
    weakened), a statement on another bucket, or the job's own statement's Sid."""
    naming = WORST_CASE_NAMING
    try:
        resolved = resolve_document(document, resolver(naming, buckets, principals))
        statements = read_document(resolved, resource_policy=True)
    except PolicyError as error:
        yield _placed(where, error)
        return
    own = naming.s3_arn(naming.name(bucket))
    for index, statement in enumerate(statements):
        place = (
            f"{where}.Statement"
            if isinstance(document["Statement"], Mapping)
            else (f"{where}.Statement[{index}]")
        )
        if statement.sid == LOCK_DOWN_SID:
            yield f"{place}.Sid: {LOCK_DOWN_SID} is the job's own statement's; choose another"
        if _opens_publicly(statement):
            yield (
                f"{place}: an Allow for everyone would open the bucket publicly; the job blocks "
                "public access to its buckets: name the principals (principal:NAME, role:NAME, "
                "an account or an ARN)"
            )
        for resource in statement.resources:
            if resource != own and not resource.startswith(f"{own}/"):
                yield (
                    f"{place}: {resource} is not bucket {bucket} or in it; a bucket policy "
                    f'governs its own bucket (bucket:{bucket}, "bucket:{bucket}/*")'
                )
                break
    size = len(json.dumps(resolved).encode())
    if size > MAX_BUCKET_POLICY_BYTES:
        yield (
            f"{where}: the policy is {size:,} bytes (with the longest names a run can give); S3"
            f" takes at most {MAX_BUCKET_POLICY_BYTES:,}"
        )


# A session policy passed to AssumeRole: at most 2,048 characters of plain text.
# https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html (Policy)
MAX_SESSION_POLICY_CHARACTERS = 2048


def document_errors(
    where: str,
    document: Mapping[str, Any],
    buckets: Mapping[str, Any],
    principals: Mapping[str, str],
    *,
    limit: int = MAX_MANAGED_POLICY_CHARACTERS,
) -> Iterator[str]:
    """What IAM would refuse in a principal's document, under the longest names a run can give,
    each with its place in the file."""
    try:
        resolved = resolve_document(document, resolver(WORST_CASE_NAMING, buckets, principals))
        read_document(resolved)
    except PolicyError as error:
        yield _placed(where, error)
        return
    # A managed policy's size is counted without whitespace; a session policy's as sent
    # (compact JSON, as the job sends it).
    if limit == MAX_SESSION_POLICY_CHARACTERS:
        size = len(json.dumps(resolved, separators=(",", ":")))
        what = "a session policy"
    else:
        size = policy_size(json.dumps(resolved))
        what = "a managed policy"
    if size > limit:
        yield (
            f"{where}: the document is {size:,} characters without whitespace (with the longest"
            f" names a run can give); AWS takes at most {limit:,} in {what}"
        )
