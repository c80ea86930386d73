"""Words the layers share: the AWS layer, the scenario and the ledger each use them, and none of
them should have to import another for its vocabulary. The ledger stores them by value, as plain
strings, and `--output json` shows those values, so a value never changes without a migration."""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    """What a permission check expects, and what AWS answered."""

    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"
