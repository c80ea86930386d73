"""`python -m moto.server`, as the test session runs it: the same server, answering the same, with
less work at each reset (the suite resets it before every test) and at each request.

With AWS's managed policies loaded (MOTO_IAM_LOAD_MANAGED_POLICIES), building an account's IAM
backend makes about 1,300 policy objects, a few tenths of a second. moto's reset builds every
backend it holds anew and then drops them all (BackendDict.reset re-initialises, then clears:
getmoto/moto#6592), and the next request builds the account's again: twice per test, once for
nothing. Here an IAM backend's reset is skipped (it is dropped right after, and the next request
builds a new one), and the AWS-managed policies are made once per account and handed to each new
backend as a reset leaves them (attached nowhere, untagged: the rest of them a test cannot change,
as AWS lets nobody change them). Two lookups moto repeats at every request are remembered.
Written against moto 5.2 (pyproject.toml bounds it): if moto changes shape, the server runs
unpatched, only slower.
"""

from __future__ import annotations

import functools
import gc
import json
import sys
from typing import Any


def _patch() -> None:
    try:
        from moto.iam import models
        from moto.settings import load_iam_aws_managed_policies
    except ImportError:  # pragma: no cover - another moto: run it as it is
        return
    backend = getattr(models, "IAMBackend", None)
    if backend is None or not hasattr(models, "aws_managed_policies_data"):
        return

    made: dict[tuple[str, str], list[Any]] = {}

    def init_aws_policies(self: Any) -> list[Any]:
        if not load_iam_aws_managed_policies():
            return []
        key = (self.account_id, self.region_name)
        if key not in made:
            data = json.loads(models.aws_managed_policies_data)
            made[key] = [
                models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, policy)
                for name, policy in data.items()
            ]
        # The same objects for every new backend of the account, as a reset leaves them: what a
        # test can change on an AWS-managed policy is how often it is attached, and its tags.
        for policy in made[key]:
            policy.attachment_count = 0
            policy.tags = {}
        return list(made[key])

    backend._init_aws_policies = init_aws_policies
    backend.reset = lambda self: None
    _remember_per_request_lookups()


def _remember_per_request_lookups() -> None:
    """Two answers moto works out again at every request, from what cannot change while it runs:
    which services it has (a directory listing) and which actions a response class has (all its
    members, inspected). About a tenth of its CPU in this suite."""
    try:
        from moto import backends
        from moto.core import responses, utils
    except ImportError:  # pragma: no cover - another moto: run it as it is
        return
    if not hasattr(backends, "list_of_moto_modules") or not hasattr(
        responses, "method_names_from_class"
    ):
        return
    services = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: services
    responses.method_names_from_class = functools.cache(
        lambda clazz: frozenset(utils.method_names_from_class(clazz))
    )


if __name__ == "__main__":
    _patch()
    # Moto as the emulator the job ships patches it: deciding as AWS documents, trusting an
    # account as AWS does (job.emulator.patch_moto).
    from job.emulator import patch_moto

    patch_moto()
    from moto.server import main

    # As in the test processes (tests/conftest.py spare_the_collector): moto keeps every
    # resource of a test, and its collector walked them all at every few hundred allocations.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

    sys.exit(main(sys.argv[1:]))
