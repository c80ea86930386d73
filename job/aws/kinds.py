"""Every resource kind the job knows, and its handler."""

from __future__ import annotations

from job.aws.handler import Handler
from job.aws.iam.policies import AttachmentHandler, PolicyHandler, RoleAttachmentHandler
from job.aws.iam.roles import RoleHandler, SessionRevocationHandler
from job.aws.iam.users import AccessKeyHandler, UserHandler
from job.aws.s3 import BucketHandler, ObjectHandler
from job.vocabulary import ResourceKind

HANDLERS: dict[ResourceKind, Handler] = {
    handler.kind: handler
    for handler in (
        BucketHandler(),
        ObjectHandler(),
        UserHandler(),
        PolicyHandler(),
        AttachmentHandler(),
        AccessKeyHandler(),
        RoleHandler(),
        RoleAttachmentHandler(),
        SessionRevocationHandler(),
    )
}


def handler_for(kind: ResourceKind) -> Handler:
    return HANDLERS[kind]
