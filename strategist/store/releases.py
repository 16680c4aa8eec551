"""Store methods for releases: immutable snapshots of the approved strategies (ids and versions),
labels that point at one (``production``), promotion and rollback, and their trail.

A release is written in one transaction, so nobody can see part of one; a promotion checks that
the release holds every strategy it says it has, and moves a label only if it still points where
the promoter saw it (one UPDATE with the old value in its WHERE): of two people promoting at
once, one wins and the other gets a conflict error, and the label always names a whole release.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..audit.lifecycle import ConflictError
from ..errors import NotFoundError, StrategistError
from .tables import (
    ReleaseActionRow,
    ReleaseLabelRow,
    ReleaseRow,
    ReleaseStrategyRow,
    StrategyRow,
    StrategyVersionRow,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_releases: sa.Table = ReleaseRow.__table__  # type: ignore[attr-defined]
_members: sa.Table = ReleaseStrategyRow.__table__  # type: ignore[attr-defined]
_labels: sa.Table = ReleaseLabelRow.__table__  # type: ignore[attr-defined]
_actions: sa.Table = ReleaseActionRow.__table__  # type: ignore[attr-defined]
_versions: sa.Table = StrategyVersionRow.__table__  # type: ignore[attr-defined]
_strategies: sa.Table = StrategyRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ReleasedStrategy:
    """One strategy of a release: the words of the version it pinned."""

    strategy_id: int
    version: int
    domain_id: str
    trigger: str
    guidance: str
    example: str

    @property
    def ref(self) -> str:
        return f"strategy:{self.strategy_id}@v{self.version}"


class ReleaseError(StrategistError):
    """A release action that cannot be done (a name taken, nothing to roll back to)."""


class ReleaseStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""

    engine: Engine

    if TYPE_CHECKING:

        def session(self) -> AbstractContextManager[Session]: ...

    # -- creating ----------------------------------------------------------------------------
    def create_release(self, name: str, *, actor: str, note: str = "") -> ReleaseRow:
        """Snapshot the approved strategies (every domain) as release ``name``, in one transaction."""
        name = name.strip()
        if not name:
            raise ReleaseError("a release needs a name")
        try:
            with self.engine.begin() as conn:
                approved = conn.execute(
                    sa.select(_strategies.c.id, _strategies.c.version, _strategies.c.domain_id)
                    .where(_strategies.c.status == "approved")
                    .order_by(_strategies.c.id)
                ).all()
                now = utcnow()
                key = conn.execute(
                    sa.insert(_releases),
                    {
                        "name": name,
                        "note": note,
                        "created_by": actor,
                        "size": len(approved),
                        "created_at": now,
                    },
                ).inserted_primary_key
                assert key is not None
                rid = int(key[0])
                if approved:
                    conn.execute(
                        sa.insert(_members),
                        [
                            {"release_id": rid, "strategy_id": sid, "version": v, "domain_id": d}
                            for sid, v, d in approved
                        ],
                    )
                conn.execute(
                    sa.insert(_actions),
                    {"action": "created", "release_id": rid, "actor": actor, "note": note, "created_at": now},
                )
        except IntegrityError:
            raise ReleaseError(
                f"a release named '{name}' exists already: releases never change, pick a new name"
            ) from None
        return self.get_release(name)

    # -- reading -----------------------------------------------------------------------------
    def get_release(self, name: str) -> ReleaseRow:
        with self.session() as s:
            row = s.exec(select(ReleaseRow).where(ReleaseRow.name == name)).first()
        if row is None:
            raise NotFoundError(f"no release '{name}' (see: strategist release list)")
        return row

    def release_by_id(self, release_id: int) -> ReleaseRow:
        with self.session() as s:
            row = s.get(ReleaseRow, release_id)
        if row is None:
            raise NotFoundError(f"no release {release_id}")
        return row

    def list_releases(self) -> list[ReleaseRow]:
        with self.session() as s:
            return list(s.exec(select(ReleaseRow).order_by(col(ReleaseRow.id))))

    def release_labels(self) -> dict[str, ReleaseLabelRow]:
        with self.session() as s:
            return {r.label: r for r in s.exec(select(ReleaseLabelRow).order_by(col(ReleaseLabelRow.label)))}

    def label_target(self, label: str) -> int | None:
        """The id of the release ``label`` points at now (None for an unknown label)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(_labels.c.release_id).where(_labels.c.label == label)).first()
        return None if found is None else int(found[0])

    def resolve_release(self, ref: str) -> tuple[ReleaseRow, str | None]:
        """The release a label points at, else the release of that name; and the label (or None)."""
        target = self.label_target(ref)
        if target is not None:
            return self.release_by_id(target), ref
        try:
            return self.get_release(ref), None
        except NotFoundError:
            raise NotFoundError(
                f"no release label or release named '{ref}' (see: strategist release list)"
            ) from None

    def released_strategies(self, release_id: int, domain: str | None = None) -> list[ReleasedStrategy]:
        """The strategies a release pinned, each with the words of its pinned version, by id."""
        q = (
            sa.select(
                _members.c.strategy_id,
                _members.c.version,
                _members.c.domain_id,
                _versions.c.trigger,
                _versions.c.guidance,
                _versions.c.example,
            )
            .join(
                _versions,
                sa.and_(
                    _versions.c.strategy_id == _members.c.strategy_id,
                    _versions.c.version == _members.c.version,
                ),
            )
            .where(_members.c.release_id == release_id)
            .order_by(_members.c.strategy_id)
        )
        if domain is not None:
            q = q.where(_members.c.domain_id == domain)
        with self.engine.connect() as conn:
            return [
                ReleasedStrategy(int(a), int(b), str(c), str(d), str(e), str(f or ""))
                for a, b, c, d, e, f in conn.execute(q)
            ]

    def release_actions(
        self, *, label: str | None = None, release_id: int | None = None
    ) -> list[ReleaseActionRow]:
        q = select(ReleaseActionRow).order_by(col(ReleaseActionRow.id))
        if label is not None:
            q = q.where(ReleaseActionRow.label == label)
        if release_id is not None:
            q = q.where(
                sa.or_(
                    col(ReleaseActionRow.release_id) == release_id,
                    col(ReleaseActionRow.previous_release_id) == release_id,
                )
            )
        with self.session() as s:
            return list(s.exec(q))

    # -- labels ------------------------------------------------------------------------------
    def _moved(self, label: str) -> ConflictError:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_labels.c.release_id, _labels.c.updated_by, _labels.c.updated_at).where(
                    _labels.c.label == label
                )
            ).first()
            if row is None:
                return ConflictError(f"label '{label}' changed meanwhile; nothing was changed: look again")
            name = conn.execute(
                sa.select(_releases.c.name).where(_releases.c.id == row[0])
            ).scalar_one_or_none()
        return ConflictError(
            f"label '{label}' was moved meanwhile to release '{name}' by {row[1]} "
            f"at {row[2]:%Y-%m-%d %H:%M:%S}; nothing was changed: look again (strategist release list)"
        )

    def promote_release(
        self, name: str, label: str, *, actor: str, note: str = "", seen: int | str | None = "current"
    ) -> ReleaseActionRow:
        """Point ``label`` at release ``name``. ``seen``: the release id the promoter saw the label
        on (None: no such label yet); by default, what it points at when this starts."""
        release = self.get_release(name)
        assert release.id is not None
        before = self.label_target(label) if isinstance(seen, str) else seen
        try:
            with self.engine.begin() as conn:
                held = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_members)
                    .where(_members.c.release_id == release.id)
                ).scalar_one()
                if int(held) != release.size:
                    raise ReleaseError(
                        f"release '{name}' holds {held} of its {release.size} strategies: "
                        "it cannot be promoted"
                    )
                self._move_label(conn, label, before, release.id, actor)
                return self._record(conn, "promoted", release.id, label, before, actor, note)
        except (IntegrityError, _Moved):  # another promoter moved (or created) the label first
            raise self._moved(label) from None

    def rollback_label(self, label: str, *, actor: str, note: str = "") -> ReleaseActionRow:
        """Point ``label`` back at the release it pointed at before its latest promotion."""
        current = self.label_target(label)
        if current is None:
            raise NotFoundError(f"no release label '{label}' (see: strategist release list)")
        try:
            with self.engine.begin() as conn:
                stack = self._label_stack(conn, label)
                if not stack or stack[-1] != current:
                    raise _Moved()
                if len(stack) < 2:
                    raise ReleaseError(f"label '{label}' has no earlier release to roll back to")
                target = stack[-2]
                self._move_label(conn, label, current, target, actor)
                return self._record(conn, "rolled_back", target, label, current, actor, note)
        except _Moved:
            raise self._moved(label) from None

    @staticmethod
    def _label_stack(conn: Connection, label: str) -> list[int]:
        """The releases a label went through, oldest first: each promotion adds one, each
        rollback takes the latest off."""
        stack: list[int] = []
        rows = conn.execute(
            sa.select(_actions.c.action, _actions.c.release_id)
            .where(_actions.c.label == label)
            .order_by(_actions.c.id)
        )
        for action, rid in rows:
            if action == "promoted":
                stack.append(int(rid))
            elif action == "rolled_back" and stack:
                stack.pop()
        return stack

    @staticmethod
    def _move_label(conn: Connection, label: str, before: int | None, after: int, actor: str) -> None:
        now = utcnow()
        if before is None:  # a new label: a second promoter's insert fails on the primary key
            conn.execute(
                sa.insert(_labels),
                {"label": label, "release_id": after, "updated_by": actor, "updated_at": now},
            )
            return
        done = conn.execute(
            sa.update(_labels)
            .where(_labels.c.label == label, _labels.c.release_id == before)
            .values(release_id=after, updated_by=actor, updated_at=now)
        )
        if done.rowcount != 1:
            raise _Moved()

    @staticmethod
    def _record(
        conn: Connection,
        action: str,
        release_id: int,
        label: str,
        previous: int | None,
        actor: str,
        note: str,
    ) -> ReleaseActionRow:
        values: dict[str, Any] = {
            "action": action,
            "release_id": release_id,
            "label": label,
            "previous_release_id": previous,
            "actor": actor,
            "note": note,
            "created_at": utcnow(),
        }
        key = conn.execute(sa.insert(_actions), values).inserted_primary_key
        assert key is not None
        return ReleaseActionRow(id=int(key[0]), **values)


class _Moved(Exception):
    """The label no longer points where the promoter saw it (the transaction is rolled back)."""
