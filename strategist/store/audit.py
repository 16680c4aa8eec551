"""Store methods for the audit trail: lifecycle transitions with an optimistic version check,
edits as new versions, review records, policy checks, and imports applied in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..audit.lifecycle import (
    RECORDED,
    ConflictError,
    ReviewRequest,
    Text,
    TransitionError,
    next_status,
    note_required,
)
from ..errors import NotFoundError
from .tables import ReviewRow, StrategyRow, StrategyVersionRow, fetch, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..audit.exchange import CurrentState, NewStrategy

_strategies: sa.Table = StrategyRow.__table__  # type: ignore[attr-defined]


def _text(row: StrategyRow) -> Text:
    return Text(row.trigger, row.guidance, row.example)


def _snapshot(text: Text, status: str, version: int) -> dict[str, Any]:
    return {**text.as_dict(), "status": status, "version": version}


class AuditStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""

    engine: Engine

    if TYPE_CHECKING:

        def session(self) -> AbstractContextManager[Session]: ...

    # -- reading -------------------------------------------------------------------------------
    def _current_row(self, s: Session, strategy_id: int) -> StrategyRow | None:
        # populate_existing: an earlier step of the same transaction may have changed the row.
        return s.get(StrategyRow, strategy_id, populate_existing=True)

    def last_review(self, strategy_id: int) -> ReviewRow | None:
        with self.session() as s:
            q = select(ReviewRow).where(ReviewRow.strategy_id == strategy_id)
            return s.exec(q.order_by(col(ReviewRow.id).desc())).first()

    def versions_by_strategy(self, ids: Iterable[int]) -> dict[int, list[StrategyVersionRow]]:
        wanted = list(ids)
        out: dict[int, list[StrategyVersionRow]] = {i: [] for i in wanted}
        with self.session() as s:
            for chunk in _chunks(wanted, 500):
                q = select(StrategyVersionRow).where(col(StrategyVersionRow.strategy_id).in_(chunk))
                for v in s.exec(
                    q.order_by(col(StrategyVersionRow.strategy_id), col(StrategyVersionRow.version))
                ):
                    out[v.strategy_id].append(v)
        return out

    def current_states(self, ids: Iterable[int]) -> dict[int, CurrentState]:
        """What an import needs to know about the strategies a file names."""
        from ..audit.exchange import CurrentState

        wanted = sorted(set(ids))
        versions = self.versions_by_strategy(wanted)
        out: dict[int, CurrentState] = {}
        with self.session() as s:
            for chunk in _chunks(wanted, 500):
                last: dict[int, ReviewRow] = {}
                q = select(ReviewRow).where(col(ReviewRow.strategy_id).in_(chunk)).order_by(col(ReviewRow.id))
                for review in s.exec(q):
                    last[review.strategy_id] = review
                for r in s.exec(select(StrategyRow).where(col(StrategyRow.id).in_(chunk))):
                    assert r.id is not None
                    first = versions[r.id][0] if versions[r.id] else None
                    first_text = Text(first.trigger, first.guidance, first.example) if first else _text(r)
                    change = last.get(r.id)
                    by = (
                        f"{change.action} by {change.reviewer} at {change.created_at:%Y-%m-%d %H:%M}"
                        if change
                        else ""
                    )
                    out[r.id] = CurrentState(r.id, r.domain_id, r.status, r.version, _text(r), first_text, by)
        return out

    # -- review actions ------------------------------------------------------------------------
    def review(self, request: ReviewRequest) -> StrategyRow:
        """Apply one review action; ConflictError if the strategy moved on since it was seen."""
        return self.review_many([request])[0]

    def review_many(self, requests: Sequence[ReviewRequest]) -> list[StrategyRow]:
        """Apply several actions in one transaction: all of them, or none."""
        with self.session() as s:
            ids = [self._apply_review(s, r) for r in requests]
            s.commit()
        return [self._fresh(i) for i in ids]

    def _fresh(self, strategy_id: int) -> StrategyRow:
        with self.session() as s:
            return fetch(s, StrategyRow, strategy_id, f"no strategy {strategy_id}")

    def _apply_review(self, s: Session, req: ReviewRequest) -> int:
        sid = req.strategy_id
        row = self._current_row(s, sid)
        if row is None:
            raise NotFoundError(f"no strategy {sid}")
        seen_version = row.version if req.seen_version is None else req.seen_version
        seen_status = row.status if req.seen_status is None else req.seen_status
        if (row.version, row.status) != (seen_version, seen_status):
            raise self._conflict(s, sid, seen_version, req.seen_status)
        status = next_status(req.action, seen_status, approve=req.approve, strategy_id=sid)
        if note_required(req.action) and not req.note.strip():
            raise TransitionError(f"a note is required to {req.action} strategy {sid}: say why")
        before = _text(row)
        after, version = before, seen_version
        if req.action == "edit":
            if req.text is None or not req.text.changed_fields(before):
                raise TransitionError(f"strategy {sid}: the edit changes nothing")
            after, version = req.text, seen_version + 1
        # The optimistic check itself: the row changes only if it is still what the reviewer saw.
        result = s.connection().execute(
            sa.update(_strategies)
            .where(
                _strategies.c.id == sid,
                _strategies.c.version == seen_version,
                _strategies.c.status == seen_status,
            )
            .values(status=status, version=version, updated_at=utcnow(), **after.as_dict())
        )
        if result.rowcount != 1:
            raise self._conflict(s, sid, seen_version, req.seen_status)
        if req.action == "edit":
            s.add(
                StrategyVersionRow(
                    strategy_id=sid,
                    version=version,
                    author=req.reviewer,
                    trigger=after.trigger,
                    guidance=after.guidance,
                    example=after.example,
                )
            )
        s.add(
            ReviewRow(
                strategy_id=sid,
                version=version,
                reviewer=req.reviewer,
                action=req.recorded_as or RECORDED[req.action],
                note=req.note.strip(),
                before=_snapshot(before, seen_status, seen_version),
                after=_snapshot(after, status, version),
            )
        )
        s.flush()
        return sid

    def _conflict(self, s: Session, sid: int, seen_version: int, seen_status: str | None) -> ConflictError:
        """The error for a strategy that moved on. It states what the reviewer saw, and only that:
        ``seen_status`` is None when only the version is known (``--version N`` names an older version,
        whose status then the request does not carry)."""
        row = self._current_row(s, sid)
        if row is None:
            return ConflictError(f"strategy {sid} was deleted since you looked at it; nothing was changed")
        last = s.exec(
            select(ReviewRow).where(ReviewRow.strategy_id == sid).order_by(col(ReviewRow.id).desc())
        ).first()
        by = f", {last.action} by {last.reviewer} at {last.created_at:%Y-%m-%d %H:%M}" if last else ""
        return ConflictError(
            f"strategy {sid} changed since you looked at it: you saw version {seen_version}"
            f"{f' ({seen_status})' if seen_status else ''}, "
            f"it is now version {row.version} ({row.status}{by}); nothing was changed. "
            f"Look again: strategist strategies show {sid}"
        )

    # -- policy checks -------------------------------------------------------------------------
    def set_policy_check(self, strategy_id: int, check: dict[str, Any]) -> None:
        """Store a policy verdict for the version it was made on (not a review action)."""
        with self.session() as s:
            result = s.connection().execute(
                sa.update(_strategies).where(_strategies.c.id == strategy_id).values(policy_check=check)
            )
            if result.rowcount != 1:
                raise NotFoundError(f"no strategy {strategy_id}")
            s.commit()

    # -- import --------------------------------------------------------------------------------
    def apply_import(
        self, creates: Sequence[NewStrategy], reviews: Sequence[ReviewRequest], *, reviewer: str, note: str
    ) -> list[int]:
        """Add new strategies and apply review actions, in one transaction. Returns the new ids."""
        new_ids: list[int] = []
        with self.session() as s:
            try:
                for n in creates:
                    new_ids.append(self._create_imported(s, n, reviewer, note))
                for r in reviews:
                    self._apply_review(s, r)
                s.commit()
            except IntegrityError as exc:
                s.rollback()
                raise ConflictError(
                    f"the import collides with a change made meanwhile ({exc.orig}); nothing was changed"
                ) from None
        return new_ids

    def _create_imported(self, s: Session, n: NewStrategy, reviewer: str, note: str) -> int:
        row = StrategyRow(
            id=n.id,
            domain_id=n.domain,
            status=n.status,
            version=n.version,
            provenance=n.provenance,
            evidence=n.evidence,
            policy_check=n.policy_check,
            trigger=n.text.trigger,
            guidance=n.text.guidance,
            example=n.text.example,
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        if s.get_bind().dialect.name == "postgresql":
            # An explicit id does not move PostgreSQL's sequence: move it, or the next insert collides.
            s.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('strategies', 'id'), "
                    "(SELECT max(id) FROM strategies))"
                )
            )
        for v in n.versions:
            s.add(
                StrategyVersionRow(
                    strategy_id=row.id,
                    version=v.version,
                    author=v.author,
                    created_at=v.created_at,
                    trigger=v.text.trigger,
                    guidance=v.text.guidance,
                    example=v.text.example,
                )
            )
        s.add(
            ReviewRow(
                strategy_id=row.id,
                version=n.version,
                reviewer=reviewer,
                action="imported",
                note=note,
                before=None,
                after=_snapshot(n.text, n.status, n.version),
            )
        )
        s.flush()
        return row.id


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
