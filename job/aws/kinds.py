"""Every resource kind the job knows, and its handler."""

from __future__ import annotations

from job.aws.handler import Handler
from job.aws.iam.groups import GroupHandler, MembershipHandler
from job.aws.iam.policies import (
    AttachmentHandler,
    GroupAttachmentHandler,
    PolicyHandler,
    RoleAttachmentHandler,
)
from job.aws.iam.roles import RoleHandler, SessionRevocationHandler
from job.aws.iam.users import AccessKeyHandler, UserHandler
from job.aws.s3 import BucketHandler, ObjectHandler
from job.kinds import sweep_kinds
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
        GroupHandler(),
        GroupAttachmentHandler(),
        MembershipHandler(),
    )
}


def handler_for(kind: ResourceKind) -> Handler:
    return HANDLERS[kind]


def _check(handlers: dict[ResourceKind, Handler]) -> None:
    """At import, so that a kind declared wrong stops every command, tests first: each kind has a
    handler; each action a kind scopes apart from its own resource is one it declares (a scope
    left behind by a renamed action would silently grant the new one on the kind's own); and
    each kind sweep looks for can be found."""
    if set(handlers) != set(ResourceKind):
        raise ImportError(f"kinds without a handler: {set(ResourceKind) - set(handlers)}")
    for kind, handler in handlers.items():
        declared = {action for actions in handler.permissions.values() for action in actions}
        if stray := set(handler.scopes) - declared:
            raise ImportError(f"{kind} scopes actions it does not declare: {sorted(stray)}")
    for kind in sweep_kinds():
        if not callable(getattr(handlers[kind], "find_tagged", None)):
            raise ImportError(f"{kind} is swept (job.kinds) but its handler cannot find it")


_check(HANDLERS)
