"""Numbered migrations, applied in order and recorded in ``schema_migrations``.

Each migration is a plain function of a connection. Table definitions inside a migration are
frozen copies of the schema at that version: never edit an applied migration, add a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

Migration = Callable[[Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _at(name: str = "created_at", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.JSON, nullable=nullable)


def _fk(name: str, target: str, nullable: bool = True, index: bool = True) -> sa.Column:
    return sa.Column(name, sa.Integer, sa.ForeignKey(target), nullable=nullable, index=index)


@migration
def m001_initial(conn: Connection) -> None:
    md = sa.MetaData()
    S, Int, F, B = sa.String, sa.Integer, sa.Float, sa.Boolean  # short column type names
    sa.Table(
        "domains",
        md,
        sa.Column("id", S, primary_key=True),
        sa.Column("name", S, nullable=False),
        _json("spec"),
        _at(),
        _at("updated_at"),
    )
    sa.Table(
        "runs",
        md,
        _id(),
        sa.Column("domain_id", S, sa.ForeignKey("domains.id"), nullable=False, index=True),
        sa.Column("command", S, nullable=False),
        sa.Column("status", S, nullable=False),
        sa.Column("stop_reason", S),
        _json("config"),
        _json("summary"),
        _at("started_at"),
        _at("finished_at", nullable=True),
    )
    sa.Table(
        "scenarios",
        md,
        _id(),
        sa.Column("domain_id", S, sa.ForeignKey("domains.id"), nullable=False, index=True),
        sa.Column("title", S, nullable=False),
        sa.Column("intent", S, nullable=False),
        sa.Column("persona_key", S, nullable=False),
        sa.Column("difficulty", S, nullable=False),
        sa.Column("origin", S, nullable=False),
        sa.Column("split", S, nullable=False, index=True),
        _json("spec"),
        _fk("run_id", "runs.id", index=False),
        sa.Column("round", Int),
        _at(),
    )
    sa.Table(
        "dialogues",
        md,
        _id(),
        _fk("run_id", "runs.id"),
        sa.Column("round", Int),
        _fk("scenario_id", "scenarios.id", nullable=False),
        sa.Column("condition", S, nullable=False),
        sa.Column("candidate_id", Int, index=True),
        sa.Column("sample", Int, nullable=False),
        sa.Column("seed", Int, nullable=False),
        sa.Column("student_model", S, nullable=False),
        sa.Column("customer_model", S, nullable=False),
        sa.Column("ended_by", S, nullable=False),
        sa.Column("error", S),
        _json("turns"),
        _json("strategy_ids"),
        _at(),
    )
    sa.Table(
        "judgements",
        md,
        _id(),
        _fk("dialogue_id", "dialogues.id", nullable=False),
        sa.Column("judge_model", S, nullable=False),
        sa.Column("score", F, nullable=False),
        sa.Column("rating", F),
        sa.Column("rating_method", S),
        _json("checks"),
        _json("rubric"),
        sa.Column("critique", sa.Text, nullable=False),
        sa.Column("weakest_turn", Int),
        _at(),
    )
    sa.Table(
        "strategies",
        md,
        _id(),
        sa.Column("domain_id", S, sa.ForeignKey("domains.id"), nullable=False, index=True),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("guidance", sa.Text, nullable=False),
        sa.Column("example", sa.Text, nullable=False),
        sa.Column("status", S, nullable=False, index=True),
        sa.Column("version", Int, nullable=False),
        _json("provenance"),
        _json("evidence"),
        sa.Column("times_retrieved", Int, nullable=False),
        _at(),
        _at("updated_at"),
    )
    sa.Table(
        "candidates",
        md,
        _id(),
        _fk("run_id", "runs.id"),
        sa.Column("round", Int),
        sa.Column("domain_id", S, sa.ForeignKey("domains.id"), nullable=False),
        _fk("scenario_id", "scenarios.id", nullable=False, index=False),
        _fk("source_dialogue_id", "dialogues.id", index=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("guidance", sa.Text, nullable=False),
        sa.Column("example", sa.Text, nullable=False),
        sa.Column("teacher_model", S, nullable=False),
        sa.Column("outcome", S, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _json("evidence"),
        _fk("strategy_id", "strategies.id", index=False),
        _at(),
    )
    sa.Table(
        "strategy_versions",
        md,
        _id(),
        _fk("strategy_id", "strategies.id", nullable=False),
        sa.Column("version", Int, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("guidance", sa.Text, nullable=False),
        sa.Column("example", sa.Text, nullable=False),
        sa.Column("author", S, nullable=False),
        _at(),
        sa.UniqueConstraint("strategy_id", "version"),
    )
    sa.Table(
        "reviews",
        md,
        _id(),
        _fk("strategy_id", "strategies.id", nullable=False),
        sa.Column("version", Int, nullable=False),
        sa.Column("reviewer", S, nullable=False),
        sa.Column("action", S, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        _json("before", nullable=True),
        _json("after", nullable=True),
        _at(),
    )
    sa.Table(
        "llm_calls",
        md,
        _id(),
        _fk("run_id", "runs.id"),
        sa.Column("role", S, nullable=False),
        sa.Column("model", S, nullable=False),
        sa.Column("prompt_tokens", Int, nullable=False),
        sa.Column("completion_tokens", Int, nullable=False),
        sa.Column("latency_ms", F, nullable=False),
        sa.Column("cost_usd", F),
        sa.Column("cache_hit", B, nullable=False),
        sa.Column("ok", B, nullable=False),
        sa.Column("error", sa.Text),
        _at(),
    )
    sa.Table(
        "events",
        md,
        _id(),
        _fk("run_id", "runs.id"),
        sa.Column("round", Int),
        sa.Column("kind", S, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        _json("detail"),
        _at(),
    )
    md.create_all(conn)


@migration
def m002_strategy_search(conn: Connection) -> None:
    """Full-text index of strategies (trigger, guidance) for run-time retrieval: SQLite FTS5.

    An external-content FTS5 table over ``strategies`` kept in step by triggers, so any code
    that inserts, edits or deletes a strategy keeps the index right. Every row is indexed
    whatever its status or domain: those are filtered at query time, so status changes cost no
    re-indexing. Other databases (and SQLite builds without FTS5) rank in Python instead.
    """
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.exec_driver_sql(
            'CREATE VIRTUAL TABLE strategies_fts USING fts5("trigger", guidance, '
            "content='strategies', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
        )
    except sa.exc.OperationalError as exc:
        if "no such module" in str(exc):
            return
        raise
    # Term -> number of strategies containing it: decides which query terms are selective.
    conn.exec_driver_sql("CREATE VIRTUAL TABLE strategies_fts_vocab USING fts5vocab(strategies_fts, row)")
    delete_old = (
        'INSERT INTO strategies_fts(strategies_fts, rowid, "trigger", guidance) '
        "VALUES ('delete', old.id, old.\"trigger\", old.guidance);"
    )
    insert_new = (
        'INSERT INTO strategies_fts(rowid, "trigger", guidance) VALUES (new.id, new."trigger", new.guidance);'
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER strategies_fts_ai AFTER INSERT ON strategies BEGIN {insert_new} END"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER strategies_fts_ad AFTER DELETE ON strategies BEGIN {delete_old} END"
    )
    # Only a change of the indexed text re-indexes (not status or usage-counter updates).
    conn.exec_driver_sql(
        'CREATE TRIGGER strategies_fts_au AFTER UPDATE OF "trigger", guidance ON strategies '
        f"BEGIN {delete_old} {insert_new} END"
    )
    conn.exec_driver_sql("INSERT INTO strategies_fts(strategies_fts) VALUES ('rebuild')")


@migration
def m003_audit(conn: Connection) -> None:
    """The judge's policy verdict on a strategy: {conflict, clause, explanation, model, version,
    checked_at}; NULL until someone runs ``strategist strategies check``."""
    conn.execute(sa.text("ALTER TABLE strategies ADD COLUMN policy_check JSON"))


@migration
def m004_response_cache(conn: Connection) -> None:
    """Model responses keyed by everything that determines them, so a re-run replays for free."""
    md = sa.MetaData()
    sa.Table(
        "response_cache",
        md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("completion", sa.JSON, nullable=False),
        _at(),
    )
    md.create_all(conn)


@migration
def m005_judge_failure_events(conn: Connection) -> None:
    """Dialogues that could not be judged get their own event kind (they were 'failure' events
    told apart by their message's first words)."""
    conn.execute(
        sa.text(
            "UPDATE events SET kind = 'judge_failure' "
            "WHERE kind = 'failure' AND message LIKE 'judging dialogue%'"
        )
    )


@migration
def m006_domain_source(conn: Connection) -> None:
    """Which pack file a domain was loaded from, and that file's digest then: a pack edited since
    is reported, never applied behind the user's back."""
    conn.execute(sa.text("ALTER TABLE domains ADD COLUMN source TEXT"))
    conn.execute(sa.text("ALTER TABLE domains ADD COLUMN source_digest VARCHAR(64)"))


@migration
def m007_conversations(conn: Connection) -> None:
    """Real conversations (imported transcripts, traffic captured by ``serve --capture``), stored
    redacted, and per strategy version the counts of judged conversations it was in, good or poor."""
    md = sa.MetaData()
    S, Int, F = sa.String, sa.Integer, sa.Float
    sa.Table("domains", md, sa.Column("id", S, primary_key=True))
    sa.Table("scenarios", md, _id())
    sa.Table("strategies", md, _id())
    sa.Table(
        "conversations",
        md,
        _id(),
        sa.Column("domain_id", S, sa.ForeignKey("domains.id"), nullable=False, index=True),
        sa.Column("source", S, nullable=False, index=True),
        sa.Column("external_id", S),
        sa.Column("exchange_hash", S, index=True),
        _json("messages"),
        _json("strategies"),
        _json("meta"),
        _json("redactions"),
        _at("started_at", nullable=True),
        sa.Column("score", F),
        _json("judgement", nullable=True),
        _at("judged_at", nullable=True),
        _fk("scenario_id", "scenarios.id", index=False),
        _at(),
        _at("updated_at"),
    )
    sa.Table(
        "strategy_outcomes",
        md,
        sa.Column("strategy_id", Int, sa.ForeignKey("strategies.id"), primary_key=True),
        sa.Column("version", Int, primary_key=True),
        sa.Column("good", Int, nullable=False),
        sa.Column("poor", Int, nullable=False),
        _at("updated_at"),
    )
    md.create_all(conn, tables=[md.tables["conversations"], md.tables["strategy_outcomes"]])


@migration
def m008_releases(conn: Connection) -> None:
    """Releases: immutable snapshots of the approved strategies (id and version), labels that point
    at one (``production``), and the trail of who created, promoted and rolled back what."""
    md = sa.MetaData()
    S, Int = sa.String, sa.Integer
    sa.Table("strategies", md, _id())
    sa.Table(
        "releases",
        md,
        _id(),
        sa.Column("name", S, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_by", S, nullable=False),
        sa.Column("size", Int, nullable=False),
        _at(),
        sa.UniqueConstraint("name"),
    )
    sa.Table(
        "release_strategies",
        md,
        sa.Column("release_id", Int, sa.ForeignKey("releases.id"), primary_key=True),
        sa.Column("strategy_id", Int, sa.ForeignKey("strategies.id"), primary_key=True),
        sa.Column("version", Int, nullable=False),
        sa.Column("domain_id", S, nullable=False),
    )
    sa.Table(
        "release_labels",
        md,
        sa.Column("label", S, primary_key=True),
        sa.Column("release_id", Int, sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("updated_by", S, nullable=False),
        _at("updated_at"),
    )
    sa.Table(
        "release_actions",
        md,
        _id(),
        sa.Column("action", S, nullable=False),
        _fk("release_id", "releases.id", nullable=False),
        sa.Column("label", S),
        _fk("previous_release_id", "releases.id", index=False),
        sa.Column("actor", S, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        _at(),
    )
    new = ["releases", "release_strategies", "release_labels", "release_actions"]
    md.create_all(conn, tables=[md.tables[n] for n in new])


@migration
def m009_judgement_parts(conn: Connection) -> None:
    """A judgement scored without its rubric answer (the judge's structured answer failed: it fell
    back to the checks and the rating), and the simulated customer's faults found in its dialogue."""
    conn.execute(sa.text("ALTER TABLE judgements ADD COLUMN partial BOOLEAN NOT NULL DEFAULT FALSE"))
    conn.execute(sa.text("ALTER TABLE judgements ADD COLUMN faults JSON NOT NULL DEFAULT '[]'"))


_applied_table = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def applied(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return []
        return [r[0] for r in conn.execute(sa.select(_applied_table.c.name).order_by(_applied_table.c.name))]


def migrate(engine: Engine, *, until: str | None = None) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction, or those up to and
    including ``until`` (a database as an older version left it). Returns their names."""
    names = [name for name, _ in MIGRATIONS]
    if until is not None and until not in names:
        raise ValueError(f"no migration {until!r}")
    done: list[str] = []
    with engine.begin() as conn:
        _applied_table.create(conn, checkfirst=True)
    for name, fn in MIGRATIONS[: names.index(until) + 1 if until else None]:
        with engine.begin() as conn:
            already = conn.execute(
                sa.select(_applied_table.c.name).where(_applied_table.c.name == name)
            ).first()
            if already:
                continue
            fn(conn)
            conn.execute(_applied_table.insert().values(name=name, applied_at=datetime.now(UTC)))
            done.append(name)
    return done
