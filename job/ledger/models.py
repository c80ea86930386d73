"""The ledger's tables: runs, the resources each run created or may have created, the attempts at
each phase, and the permission checks verify recorded.

Enums are stored by value as plain strings (no database enum types), so that a new state is a code
change and a CHECK-free migration on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The states live apart so that the command line can list them without importing SQLAlchemy.
from job.ledger.states import (
    ItemStatus,
    Outcome,
    Phase,
    ResourceState,
    RunStatus,
    RunVerdict,
    Verdict,
)
from job.vocabulary import ResourceKind

__all__ = ["ItemStatus", "Outcome", "Phase", "ResourceState", "RunStatus", "RunVerdict", "Verdict"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out; SQLite keeps no zone, so we put it back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use job.ledger.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum], length: int = 16) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    # Named constraints, so that migrations can find them again on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    # The account the run's resources live in: every later phase refuses other credentials.
    account_id: Mapped[str] = mapped_column(String(12))
    partition: Mapped[str] = mapped_column(String(16), default="aws")
    # Choices made when the run started (job.scenario.RunOptions), so that a resume, a verify or
    # a teardown on another machine rebuilds the same scenario.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The scenario file the run proves, as given (YAML or JSON), and its SHA-256: verify and
    # teardown of the run use this, whatever the file says now (a run without --scenario stores
    # the built-in seed's file). None only for runs started before scenario files: the seed.
    scenario: Mapped[str | None] = mapped_column(Text)
    scenario_sha256: Mapped[str | None] = mapped_column(String(64))
    # The policy files the scenario names (policy_file: ...), {path as written: text}, read once
    # when the run started: later phases use these, never the files. The SHA-256 covers them.
    # None when it names none (and for runs started before policy files).
    scenario_files: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # What verify measured of AWS: {"propagation_seconds": {principal: s}, "revocation_seconds":
    # {principal: s}}, for `runs show` and --metrics-file.
    measurements: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus))
    # What the latest verify proved (job.ledger.states.RunVerdict), None before any verify; and
    # its one-line account for people ("2 of 9 checks not answered: ..."). Set to incomplete
    # before the first check, so a verify killed at any point leaves a true verdict behind.
    verdict: Mapped[RunVerdict | None] = mapped_column(_enum(RunVerdict))
    verdict_summary: Mapped[str | None] = mapped_column(Text)
    # Who holds the run now ("host:pid") and until when its lease runs; see job.ledger.hold.
    holder: Mapped[str | None] = mapped_column(String(255))
    held_until: Mapped[datetime | None]
    # The fleet batch item this run was made for (job.fleet), None for a run started on its own.
    batch_item_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    resources: Mapped[list[Resource]] = relationship(
        back_populates="run", order_by="Resource.id", cascade="all, delete-orphan"
    )
    attempts: Mapped[list[PhaseAttempt]] = relationship(
        back_populates="run", order_by="PhaseAttempt.id", cascade="all, delete-orphan"
    )
    checks: Mapped[list[Check]] = relationship(
        back_populates="run", order_by="Check.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_runs_status_updated_at", "status", "updated_at"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_verdict_created_at", "verdict", "created_at"),
    )


class Resource(Base):
    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ResourceKind] = mapped_column(_enum(ResourceKind, 32))
    # The scenario's name for it ("writer", "read-policy"), unique within a run.
    logical_name: Mapped[str] = mapped_column(String(64))
    # The deterministic AWS name, known before the create call: what a crashed run is found by.
    name: Mapped[str] = mapped_column(String(255))
    # What AWS returns (an ARN, an access key id); empty until the create call has answered.
    physical_id: Mapped[str | None] = mapped_column(String(2048))
    # What the kind's handler needs to find and delete it (bucket and key, user and policy ARN).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[ResourceState] = mapped_column(_enum(ResourceState))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    run: Mapped[Run] = relationship(back_populates="resources")

    __table_args__ = (UniqueConstraint("run_id", "logical_name"),)


class PhaseAttempt(Base):
    __tablename__ = "phase_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    phase: Mapped[Phase] = mapped_column(_enum(Phase))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[Outcome] = mapped_column(_enum(Outcome))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="attempts")


class Check(Base):
    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("phase_attempts.id", ondelete="CASCADE"))
    principal: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str] = mapped_column(String(2048))
    # The request context the cell set (JSON), when it set one (job.scenario.Expectation).
    context: Mapped[str | None] = mapped_column(Text)
    expected: Mapped[Verdict] = mapped_column(_enum(Verdict, 8))
    actual: Mapped[Verdict] = mapped_column(_enum(Verdict, 8))
    passed: Mapped[bool]
    # Why the answer was what it was: an AWS error code, or why a denial proved nothing.
    detail: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="checks")


class Batch(Base):
    """A fleet batch: the same scenario, run once in each (account, region) item (job.fleet)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32))
    # The role assumed in each account, by name: arn:<partition>:iam::<account>:role/<name>.
    role_name: Mapped[str] = mapped_column(String(64))
    # What the role's trust asks for. Not a secret (AWS says so), only a guard against a
    # confused deputy; kept so that any worker, on any machine, assumes the role the same way.
    external_id: Mapped[str | None] = mapped_column(String(1224))
    # As a run keeps them (job.ledger.models.Run): the scenario every item's run proves.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scenario: Mapped[str] = mapped_column(Text)
    scenario_sha256: Mapped[str] = mapped_column(String(64))
    scenario_files: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[BatchItem]] = relationship(
        back_populates="batch", order_by="BatchItem.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_batches_created_at", "created_at"),)


class BatchItem(Base):
    __tablename__ = "batch_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(String(12))
    region: Mapped[str] = mapped_column(String(32))
    status: Mapped[ItemStatus] = mapped_column(_enum(ItemStatus))
    # The verdict of the item's run, or incomplete when there was none to judge by (the role
    # could not be assumed, a phase could not finish); `error` then says why, in one line.
    verdict: Mapped[RunVerdict | None] = mapped_column(_enum(RunVerdict))
    error: Mapped[str | None] = mapped_column(Text)
    # The item's latest run (earlier ones belonged to workers that died, and were torn down).
    run_id: Mapped[str | None] = mapped_column(String(32))
    holder: Mapped[str | None] = mapped_column(String(255))
    seconds: Mapped[float | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    batch: Mapped[Batch] = relationship(back_populates="items")
    claims: Mapped[list[ItemClaim]] = relationship(
        back_populates="item", order_by="ItemClaim.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("batch_id", "account_id", "region"),
        Index("ix_batch_items_batch_id_status", "batch_id", "status"),
    )


class ItemClaim(Base):
    """One worker's turn at an item, from its claim to its release (None: it died holding it).
    A claim is made only under the item's lock, so that turns never overlap: the record that
    proves it."""

    __tablename__ = "item_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("batch_items.id", ondelete="CASCADE"), index=True
    )
    holder: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None]

    item: Mapped[BatchItem] = relationship(back_populates="claims")
