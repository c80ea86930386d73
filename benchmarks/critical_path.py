"""The physical limit of a `job run`: the longest chain of AWS calls that really depend on each
other. However concurrent the job gets, it cannot finish in fewer round trips than that chain has.

The scenario is job's own, as the benchmark runs it (JOB_REQUIRE_TLS=0: no bucket policy): every
call it must make, once, with only the dependencies AWS or the contract impose, not those of job's
current code. Looks the job makes for safety (tags before a delete, listings to find what a crash
may have left) are not steps: they are the job's choice, and the report lists them.

One step is one round trip. On AWS the first allowed call with a new key also waits for IAM to
propagate the key and the attachment (seconds, retried); that wait is outside anyone's control
and the emulator has none, so it counts as one round trip here.
"""

from __future__ import annotations

from dataclasses import dataclass

PRINCIPALS = ("writer", "reader")
# What each principal's checks are, as in job.scenario: allowed ones first, then the denials.
# An allowed check also needs what it is aimed at: a put the bucket, a get the fixture object.
ALLOWED = {
    "writer": {
        "s3:PutObject probe": "s3:CreateBucket",
        "s3:GetObject fixture": "s3:PutObject fixture",
    },
    "reader": {"s3:GetObject fixture": "s3:PutObject fixture"},
}
DENIED = {
    "writer": (
        "s3:DeleteObject probe",
        "s3:ListObjectsV2 bucket",
        "s3:GetObject elsewhere",
        "iam:ListUsers",
    ),
    "reader": (
        "s3:PutObject probe",
        "s3:DeleteObject probe",
        "s3:ListObjectsV2 bucket",
        "s3:GetObject elsewhere",
        "iam:ListUsers",
    ),
}
# Bucket settings job applies right after creating it (tag, block public access, owner-enforced
# objects, default encryption).
BUCKET_SETTINGS = (
    "PutBucketTagging",
    "PutPublicAccessBlock",
    "PutBucketOwnershipControls",
    "PutBucketEncryption",
)


@dataclass(frozen=True)
class Step:
    name: str
    after: tuple[str, ...]
    why: str


def _principal_steps(principal: str) -> list[Step]:
    p = principal
    allowed = [f"{p}: {check}" for check in ALLOWED[p]]  # the keys: the checks' names
    denied = [f"{p}: {check}" for check in DENIED[p]]
    steps = [
        Step(
            f"iam:CreateUser {p}",
            ("sts:GetCallerIdentity",),
            "the run's account is recorded before anything is created",
        ),
        Step(
            f"iam:CreatePolicy {p}",
            ("sts:GetCallerIdentity",),
            "same; its document names the bucket by its name, known in advance, so it does not "
            "wait for CreateBucket",
        ),
        Step(
            f"iam:AttachUserPolicy {p}",
            (f"iam:CreateUser {p}", f"iam:CreatePolicy {p}"),
            "both the user and the policy must exist",
        ),
        Step(
            f"iam:CreateAccessKey {p}",
            (f"iam:CreateUser {p}",),
            "a key belongs to a user; it does not need the policy attached",
        ),
    ]
    for check, aimed_at in ALLOWED[p].items():
        steps.append(
            Step(
                f"{p}: {check}",
                (f"iam:CreateAccessKey {p}", f"iam:AttachUserPolicy {p}", aimed_at),
                "signed with the user's new key, allowed by the attached policy, aimed at what "
                "must exist",
            )
        )
    for check in denied:
        steps.append(
            Step(
                check,
                tuple(allowed),
                "a denial seen before the principal's allowed calls work may only be IAM not "
                "having caught up: it proves nothing",
            )
        )
    steps += [
        Step(
            f"iam:DeleteAccessKey {p}",
            tuple(allowed + denied),
            "the key is in use until the principal's last check",
        ),
        Step(
            f"iam:DetachUserPolicy {p}",
            tuple(allowed + denied),
            "the permission is under test until the principal's last check",
        ),
        Step(
            f"iam:DeleteUser {p}",
            (f"iam:DeleteAccessKey {p}", f"iam:DetachUserPolicy {p}"),
            "IAM refuses DeleteUser (DeleteConflict) while a key or an attached policy remains",
        ),
        Step(
            f"iam:DeletePolicy {p}",
            (f"iam:DetachUserPolicy {p}",),
            "IAM refuses to delete a policy that is still attached",
        ),
    ]
    return steps


def scenario_steps() -> list[Step]:
    """Every call of a `job run`, each with the calls it must wait for."""
    steps = [
        Step(
            "sts:GetCallerIdentity",
            (),
            "the ledger records the run's account before any resource (the contract: never act "
            "on another account)",
        ),
        Step("s3:CreateBucket", ("sts:GetCallerIdentity",), "as for every create"),
        Step("s3:PutObject fixture", ("s3:CreateBucket",), "an object goes into its bucket"),
    ]
    steps += [
        Step(f"s3:{setting}", ("s3:CreateBucket",), "settings of an existing bucket")
        for setting in BUCKET_SETTINGS
    ]
    for principal in PRINCIPALS:
        steps += _principal_steps(principal)
    checks = [f"{p}: {check}" for p in PRINCIPALS for check in (*ALLOWED[p], *DENIED[p])]
    object_checks = tuple(
        check
        for check in checks
        if ("s3:PutObject" in check or "s3:DeleteObject" in check or "GetObject fixture" in check)
    )
    listing_checks = tuple(check for check in checks if "s3:ListObjectsV2" in check)
    steps += [
        Step(
            "s3:DeleteObjects",
            object_checks,
            "the objects (the fixture, the writer's probe, anything a wrongly allowed put left) "
            "are read or written until the last object check; their keys are known, no listing",
        ),
        Step(
            "s3:DeleteBucket",
            (
                "s3:DeleteObjects",
                *listing_checks,
                *(f"s3:{setting}" for setting in BUCKET_SETTINGS),
            ),
            "S3 refuses to delete a bucket that is not empty; a listing check aimed at a deleted "
            "bucket would hear NoSuchBucket, which reads as allowed",
        ),
    ]
    return steps


@dataclass(frozen=True)
class CriticalPath:
    depth: int  # round trips on the longest chain
    chain: tuple[str, ...]  # one longest chain, first call first
    calls: int  # every call of the scenario, once


def critical_path(steps: list[Step]) -> CriticalPath:
    by_name = {step.name: step for step in steps}
    unknown = {dep for step in steps for dep in step.after if dep not in by_name}
    if unknown:
        raise ValueError(f"steps depend on undeclared steps: {sorted(unknown)}")

    chains: dict[str, tuple[str, ...]] = {}  # the longest chain ending with each step
    visiting: set[str] = set()

    def chain_to(name: str) -> tuple[str, ...]:
        if name not in chains:
            if name in visiting:
                raise ValueError(f"dependency cycle through {name}")
            visiting.add(name)
            before = max((chain_to(dep) for dep in by_name[name].after), key=len, default=())
            visiting.discard(name)
            chains[name] = (*before, name)
        return chains[name]

    chain = max((chain_to(step.name) for step in steps), key=len)
    return CriticalPath(depth=len(chain), chain=chain, calls=len(steps))
