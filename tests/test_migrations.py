"""The migrations create exactly the schema the table models describe (strategist/store/)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import strategist.store.tables as tables
from strategist.errors import StrategistError
from strategist.store import Store, make_engine, migrations

ALL_MIGRATIONS = [name for name, _ in migrations.MIGRATIONS]
assert ALL_MIGRATIONS[0] == "m001_initial"


def model_tables() -> dict[str, sa.Table]:
    """The tables declared in strategist/store/tables.py (robust to other tests adding models)."""
    out = {}
    for obj in vars(tables).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, SQLModel)
            and obj.__module__ == tables.__name__
            and hasattr(obj, "__table__")
        ):
            out[obj.__table__.name] = obj.__table__
    return out


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(tmp_path / "empty.db")
    yield eng
    eng.dispose()


def test_model_tables_are_in_sqlmodel_metadata():
    expected = model_tables()
    core = {
        "domains",
        "runs",
        "scenarios",
        "dialogues",
        "judgements",
        "candidates",
        "strategies",
        "strategy_versions",
        "reviews",
        "llm_calls",
        "events",
    }
    assert core <= set(expected)
    for name, table in expected.items():
        assert SQLModel.metadata.tables[name] is table


def test_migrate_creates_every_table_with_the_same_columns(engine):
    assert migrations.migrate(engine) == ALL_MIGRATIONS
    insp = sa.inspect(engine)
    expected = model_tables()
    # Migration m002's full-text index of strategies: an FTS5 virtual table and its shadow tables.
    search_index = {n for n in insp.get_table_names() if n.startswith("strategies_fts")}
    assert "strategies_fts" in search_index
    assert set(insp.get_table_names()) - search_index == set(expected) | {"schema_migrations"}
    for name, table in expected.items():
        db_cols = [c["name"] for c in insp.get_columns(name)]
        assert sorted(db_cols) == sorted(c.name for c in table.columns), name


def test_migrated_schema_agrees_on_keys_nullability_and_indexes(engine):
    migrations.migrate(engine)
    insp = sa.inspect(engine)
    for name, table in model_tables().items():
        db_cols = {c["name"]: c for c in insp.get_columns(name)}
        for col in table.columns:
            if not col.primary_key:
                assert bool(db_cols[col.name]["nullable"]) == bool(col.nullable), f"{name}.{col.name}"
        assert insp.get_pk_constraint(name)["constrained_columns"] == [c.name for c in table.primary_key]
        db_fks = sorted(
            (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
            for f in insp.get_foreign_keys(name)
        )
        model_fks = sorted(
            ((fk.parent.name,), fk.column.table.name, (fk.column.name,)) for fk in table.foreign_keys
        )
        assert db_fks == model_fks, name
        db_idx = sorted(tuple(i["column_names"]) for i in insp.get_indexes(name))
        model_idx = sorted(tuple(c.name for c in i.columns) for i in table.indexes)
        assert db_idx == model_idx, name
        db_uq = sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name))
        model_uq = sorted(
            tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, sa.UniqueConstraint)
        )
        assert db_uq == model_uq, name


def test_migration_is_recorded(engine):
    assert migrations.applied(engine) == []
    migrations.migrate(engine)
    assert migrations.applied(engine) == ALL_MIGRATIONS
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, applied_at FROM schema_migrations")).all()
    assert [r[0] for r in rows] == ALL_MIGRATIONS
    assert rows[0][1] is not None


def test_second_migrate_applies_nothing_and_keeps_rows(tmp_path, northwind):
    path = tmp_path / "s.db"
    store = Store.open(path)
    try:
        store.upsert_domain(northwind)
        assert store.migrate() == []
    finally:
        store.close()
    again = Store.open(path)
    try:
        assert again.migrate() == []
        assert [d.id for d in again.list_domains()] == ["northwind"]
        assert again.get_domain("northwind") == northwind
        assert migrations.applied(again.engine) == ALL_MIGRATIONS
    finally:
        again.close()


def test_store_open_applies_migrations(tmp_path):
    store = Store.open(tmp_path / "fresh.db")
    try:
        assert migrations.applied(store.engine) == ALL_MIGRATIONS
        assert set(model_tables()) <= set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_store_open_without_migrate_leaves_file_empty(tmp_path):
    store = Store.open(tmp_path / "bare.db", migrate=False)
    try:
        assert migrations.applied(store.engine) == []
    finally:
        store.close()


def test_garbage_file_is_a_one_line_strategist_error(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is definitely not SQLite\n" * 300)
    with pytest.raises(StrategistError) as info:
        Store.open(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert "not a usable database" in msg


def test_missing_folder_is_a_strategist_error(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "s.db"
    with pytest.raises(StrategistError) as info:
        Store.open(target)
    assert "does not exist" in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "no").exists()


def test_migrate_until_leaves_an_older_database(engine):
    assert migrations.migrate(engine, until=ALL_MIGRATIONS[1]) == ALL_MIGRATIONS[:2]
    assert migrations.applied(engine) == ALL_MIGRATIONS[:2]
    assert migrations.migrate(engine) == ALL_MIGRATIONS[2:]
    with pytest.raises(ValueError, match="no migration"):
        migrations.migrate(engine, until="m999_future")
