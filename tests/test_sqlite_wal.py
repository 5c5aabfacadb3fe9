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
