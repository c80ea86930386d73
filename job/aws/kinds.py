"""Every resource kind the job knows, by the name the ledger stores."""

from __future__ import annotations

from job.aws.handler import Handler
from job.aws.iam import AccessKeyHandler, AttachmentHandler, PolicyHandler, UserHandler
from job.aws.s3 import BucketHandler, ObjectHandler

HANDLERS: dict[str, Handler] = {
    handler.kind: handler
    for handler in (
        BucketHandler(),
        ObjectHandler(),
        UserHandler(),
        PolicyHandler(),
        AttachmentHandler(),
        AccessKeyHandler(),
    )
}


def handler_for(kind: str) -> Handler:
    return HANDLERS[kind]
