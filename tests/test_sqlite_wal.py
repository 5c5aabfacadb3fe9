"""The embedded SQLite set-up: commits append to the write-ahead log, a background thread checkpoints it."""
from __future__ import annotations

import os
import sqlite3

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text

import engine.db
from engine.db import WAL_AUTOCHECKPOINT_PAGES, make_engine, wal_checkpointer


def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.db, "WAL_CHECKPOINT_INTERVAL", 3600)  # only when kicked, in this test
    path = tmp_path / "huying.db"
    eng = make_engine(f"sqlite:///{path}")
    rows = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("body", String))
    try:
        with eng.begin() as conn:
            rows.create(conn)
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == WAL_AUTOCHECKPOINT_PAGES
        for i in range(1500):  # one commit each, as requests do: 1.5 MB of rows, over 1000 pages of log
            with eng.begin() as conn:
                conn.execute(insert(rows).values(body=f"{i:04d}" * 250))
        # every commit is in the log and none waited for a checkpoint: the database file is still small
        assert os.path.getsize(path) < 50_000
        assert os.path.getsize(f"{path}-wal") > 1_500_000
        checkpointer = wal_checkpointer(eng)
        assert checkpointer.kick()
        assert os.path.getsize(path) > 1_500_000  # the pages are in the database file now
        with eng.connect() as conn:
            assert conn.execute(select(rows.c.body).where(rows.c.id == 1500)).scalar() == "1499" * 250
        reader = sqlite3.connect(path)  # and any other process reads them
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1500
        reader.close()
    finally:
        eng.dispose()
        wal_checkpointer(eng).stop()


def test_an_in_memory_database_has_no_checkpointer():
    eng = make_engine("sqlite://")
    assert wal_checkpointer(eng) is None
    with eng.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def _table(eng):
    rows = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("body", String))
    with eng.begin() as conn:
        rows.create(conn, checkfirst=True)
    return rows


def test_two_writers_queue_at_the_gate_and_both_commit(tmp_path, monkeypatch):
    """A second writer (another engine, as another process would be) waits for the first to commit."""
    import threading

    monkeypatch.setattr(engine.db, "WRITER_GATE_TIMEOUT", 5)
    url = f"sqlite:///{tmp_path / 'huying.db'}"
    first, second = make_engine(url), make_engine(url)
    rows = _table(first)
    writing, go, done = threading.Event(), threading.Event(), []

    def slow_writer():
        with first.begin() as conn:
            conn.execute(insert(rows).values(body="first"))
            writing.set()
            go.wait(5)
        done.append("first")

    def second_writer():
        with second.begin() as conn:
            conn.execute(insert(rows).values(body="second"))
        done.append("second")

    t1 = threading.Thread(target=slow_writer)
    t1.start()
    assert writing.wait(5)
    t2 = threading.Thread(target=second_writer)
    t2.start()
    t2.join(0.3)
    assert t2.is_alive() and done == []  # waiting at the gate, no error
    go.set()
    t1.join(5)
    t2.join(5)
    assert done == ["first", "second"]
    with second.connect() as conn:
        assert conn.execute(select(rows.c.body).order_by(rows.c.id)).scalars().all() == ["first", "second"]
    first.dispose()
    second.dispose()


def test_a_rollback_or_commit_opens_the_gate_again(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.db, "WRITER_GATE_TIMEOUT", 1)  # a gate left closed would fail within a second
    eng = make_engine(f"sqlite:///{tmp_path / 'huying.db'}")
    rows = _table(eng)
    with eng.connect() as conn:
        conn.execute(insert(rows).values(body="undone"))
        conn.rollback()
    with eng.begin() as conn:
        conn.execute(insert(rows).values(body="kept"))
    with eng.begin() as conn:  # the same thread writes again at once
        conn.execute(insert(rows).values(body="kept too"))
    with eng.connect() as conn:
        assert conn.execute(select(rows.c.body).order_by(rows.c.id)).scalars().all() == ["kept", "kept too"]
    eng.dispose()
