"""`python -m moto.server`, as the test session runs it: the same server, answering the same, with
less work at each reset (the suite resets it before every test).

With AWS's managed policies loaded (MOTO_IAM_LOAD_MANAGED_POLICIES), building an account's IAM
backend parses about 1,300 policy documents, a few tenths of a second. moto's reset builds every
backend it holds anew and then drops them all (BackendDict.reset re-initialises, then clears:
getmoto/moto#6592), and the next request builds the account's again: twice per test, once for
nothing. Here an IAM backend's reset is skipped (it is dropped right after, and the next request
builds a new one), and the policies' JSON is parsed once per process rather than per backend (each
backend still makes its own policy objects, which attachments change). Written against moto 5.2
(pyproject.toml bounds it): if moto changes shape, the server runs unpatched, only slower.
"""

from __future__ import annotations

import json
import sys
from functools import cache
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

    @cache
    def parsed() -> dict[str, Any]:
        return dict(json.loads(models.aws_managed_policies_data))

    def init_aws_policies(self: Any) -> list[Any]:
        if not load_iam_aws_managed_policies():
            return []
        return [
            models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
            for name, data in parsed().items()
        ]

    backend._init_aws_policies = init_aws_policies
    backend.reset = lambda self: None


if __name__ == "__main__":
    _patch()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
