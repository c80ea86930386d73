"""Every query `job fleet` makes of the ledger: batches, their (account, region) items, and the
claims workers make on items. It shares the Store's session and lock, and commits each write at
once, as the Store does: an item's claim is in the ledger before any work on it starts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, case, func, select
from sqlalchemy.exc import IntegrityError

from job.errors import BadInput
from job.ledger.models import (
    Batch,
    BatchItem,
    ItemClaim,
    ItemStatus,
    Run,
    RunStatus,
    RunVerdict,
    utcnow,
)
from job.ledger.store import Store, serialized

# A batch id: what `fleet plan` makes, or what a scheduler passes (a Kubernetes Job's name is at
# most 63 characters of lowercase letters, digits and '-').
BATCH_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?")


@dataclass(frozen=True)
class Plan:
    """What a batch is: the same scenario, through the same role, in each (account, region)."""

    prefix: str
    role_name: str
    external_id: str | None
    options: dict[str, Any]
    scenario: str
    scenario_sha256: str
    scenario_files: dict[str, str] | None
    items: tuple[tuple[str, str], ...]

    def same_as(self, batch: Batch) -> bool:
        return (
            batch.prefix,
            batch.role_name,
            batch.external_id,
            batch.options,
            batch.scenario_sha256,
            {(item.account_id, item.region) for item in batch.items},
        ) == (
            self.prefix,
            self.role_name,
            self.external_id,
            self.options,
            self.scenario_sha256,
            set(self.items),
        )


def unknown_batch(batch_id: str) -> BadInput:
    return BadInput(
        f"unknown batch id {batch_id!r}: `job fleet list` shows the batches in the ledger"
    )


class Batches:
    """The fleet's part of the ledger, on a Store's session (and under its lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.session = store.session
        self.lock = store.lock

    @serialized
    def plan(self, batch_id: str, plan: Plan) -> tuple[Batch, bool]:
        """Record the batch and its items, pending; or find it already recorded with the same
        plan (planning again is a no-op: a scheduler's every pod may plan the batch it works).
        True when this call recorded it. The same id with another plan is bad input."""
        existing = self.session.get(Batch, batch_id, populate_existing=True)
        if existing is None:
            batch = Batch(
                id=batch_id,
                prefix=plan.prefix,
                role_name=plan.role_name,
                external_id=plan.external_id,
                options=plan.options,
                scenario=plan.scenario,
                scenario_sha256=plan.scenario_sha256,
                scenario_files=plan.scenario_files,
                items=[
                    BatchItem(account_id=account, region=region, status=ItemStatus.PENDING)
                    for account, region in plan.items
                ],
            )
            self.session.add(batch)
            try:
                self.session.flush()  # another process's insert of the same id fails it here
            except IntegrityError:
                self.session.rollback()
                existing = self.session.get(Batch, batch_id, populate_existing=True)
                if existing is None:
                    raise
            else:
                self.store.commit()
                return batch, True
        if not plan.same_as(existing):
            raise BadInput(
                f"batch {batch_id} is already planned with other accounts, regions, role or "
                "scenario; plan under a new --batch-id, or leave --batch-id out for a fresh one"
            )
        return existing, False

    @serialized
    def get(self, batch_id: str) -> Batch:
        if not BATCH_ID.fullmatch(batch_id):
            raise unknown_batch(batch_id)
        batch = self.session.get(Batch, batch_id, populate_existing=True)
        if batch is None:
            raise unknown_batch(batch_id)
        return batch

    @serialized
    def summaries(self) -> Sequence[Row[Any]]:
        """Newest first: each batch's id, created_at, and its items counted by status and verdict,
        as plain rows (one grouped query, whatever the batches' sizes)."""
        counts = (
            select(
                BatchItem.batch_id,
                func.count().label("items"),
                func.sum(case((BatchItem.status == ItemStatus.DONE, 1), else_=0)).label("done"),
                *(
                    func.sum(case((BatchItem.verdict == verdict, 1), else_=0)).label(verdict.value)
                    for verdict in RunVerdict
                ),
            )
            .group_by(BatchItem.batch_id)
            .subquery()
        )
        query = (
            select(Batch.id, Batch.created_at, counts)
            .join(counts, counts.c.batch_id == Batch.id, isouter=True)
            .order_by(Batch.created_at.desc(), Batch.id.desc())
        )
        return self.session.execute(query).all()

    @serialized
    def items(self, batch_id: str) -> Sequence[Any]:
        """The batch's items as plain rows, by account then region (ten thousand of them read
        in a fraction of a second; whole ORM objects would take seconds)."""
        query = (
            select(
                BatchItem.id,
                BatchItem.account_id,
                BatchItem.region,
                BatchItem.status,
                BatchItem.verdict,
                BatchItem.run_id,
                BatchItem.seconds,
                BatchItem.error,
            )
            .where(BatchItem.batch_id == batch_id)
            .order_by(BatchItem.account_id, BatchItem.region)
        )
        return self.session.execute(query).all()

    @serialized
    def open_items(self, batch_id: str, limit: int) -> list[int]:
        """Items not done, unclaimed ones first: those a worker may try to claim. A running item
        is among them because its holder may be dead; its lock says whether it is."""
        query = (
            select(BatchItem.id)
            .where(BatchItem.batch_id == batch_id, BatchItem.status != ItemStatus.DONE)
            .order_by(case((BatchItem.status == ItemStatus.PENDING, 0), else_=1), BatchItem.id)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    @serialized
    def claim(self, item_id: int, holder: str) -> tuple[BatchItem, ItemClaim] | None:
        """Make the item the holder's: only ever called under the item's lock, so no two claims
        overlap. None when the item was done in the meantime (by the lock's previous holder)."""
        item = self.session.get(BatchItem, item_id, populate_existing=True)
        if item is None or item.status is ItemStatus.DONE:
            return None
        item.status, item.holder = ItemStatus.RUNNING, holder
        claim = ItemClaim(holder=holder)
        item.claims.append(claim)
        self.store.commit()
        return item, claim

    @serialized
    def started(self, item: BatchItem, run_id: str) -> None:
        item.run_id = run_id
        self.store.commit()

    @serialized
    def finish(
        self,
        item: BatchItem,
        claim: ItemClaim,
        verdict: RunVerdict,
        error: str | None,
        seconds: float,
    ) -> None:
        item.status, item.verdict, item.error = ItemStatus.DONE, verdict, error
        item.seconds, item.holder = round(seconds, 3), None
        claim.released_at = utcnow()
        self.store.commit()

    @serialized
    def release(self, item: BatchItem, claim: ItemClaim) -> None:
        """Give the item back unfinished (the worker was stopped): the next worker runs it."""
        item.status, item.holder = ItemStatus.PENDING, None
        claim.released_at = utcnow()
        self.store.commit()

    @serialized
    def unfinished_runs(self, item_ids: Sequence[int]) -> list[str]:
        """The runs made for these items that are not torn down, oldest first: a dead worker's
        run, to tear down before its item is run again, or a batch's, for `fleet teardown`."""
        query = (
            select(Run.id)
            .where(Run.batch_item_id.in_(item_ids), Run.status != RunStatus.TORN_DOWN)
            .order_by(Run.created_at, Run.id)
        )
        return list(self.session.scalars(query))

    @serialized
    def item_ids(self, batch_id: str) -> list[int]:
        return list(
            self.session.scalars(select(BatchItem.id).where(BatchItem.batch_id == batch_id))
        )
