"""Faults injected at the AWS boundary through botocore's event hooks: no patching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import EndpointConnectionError


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no `except Exception` can swallow it."""


@dataclass
class CallLog:
    """Counts the calls (one per API operation, retries not counted) and names them."""

    names: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


@dataclass
class FailAt:
    """Fails the `index`-th call (1-based) before it is sent: AWS never sees it."""

    index: int
    count: int = 0

    def __call__(self, model: Any, **_: Any) -> None:
        self.count += 1
        if self.count == self.index:
            raise EndpointConnectionError(endpoint_url=f"injected fault before {model.name}")


@dataclass
class CrashAfter:
    """Dies right after the `index`-th call has been answered: AWS did it, the job never heard."""

    index: int
    count: int = 0

    def __call__(self, model: Any, **_: Any) -> None:
        self.count += 1
        if self.count == self.index:
            raise Crash(f"killed after {model.name}")
