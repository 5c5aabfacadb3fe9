"""Database plumbing on PostgreSQL: pooled connections the server has closed are replaced unnoticed; a
transaction is opened only when a statement needs one, and then holds everything up to its COMMIT."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from engine.db import make_engine, needs_transaction
from engine.writes import Batch

from .conftest import PG_URL, _pg_url

needs_pg = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (HUYING_TEST_DATABASE_URL)")


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(pid: int) -> None:
    admin = make_url(_pg_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        # the timeout makes the call wait until the backend has gone
        assert conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0]


@needs_pg
def test_a_pooled_connection_the_server_closed_is_replaced_on_checkout():
    engine = make_engine(_pg_url(), pool_size=1, max_overflow=0)
    try:
        first = _backend_pid(engine)
        assert _backend_pid(engine) == first  # a live connection is reused, not checked by a round trip
        _terminate(first)
        # no error: the dead connection is noticed on checkout and a new one is made
        second = _backend_pid(engine)
        assert second != first
        assert _backend_pid(engine) == second
    finally:
        engine.dispose()



@pytest.mark.parametrize(("statement", "needs"), [
    ("SELECT 1", False),
    ("  (SELECT a FROM t) UNION (SELECT b FROM u)", False),
    ("select id from engine_sla_clock where next_fire_at <= %s", False),
    ("SELECT id FROM engine_sla_clock ORDER BY next_fire_at LIMIT 5 FOR UPDATE SKIP LOCKED", True),
    ("SELECT d.id FROM webhook_delivery AS d FOR UPDATE OF d SKIP LOCKED", True),
    ("SELECT * FROM t FOR NO KEY UPDATE", True),
    ("SELECT * FROM t FOR SHARE", True),
    ("SELECT * FROM t FOR KEY SHARE", True),
    ("INSERT INTO t VALUES (1)", True),
    ("UPDATE t SET a = 1", True),
    ("DELETE FROM t", True),
    ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", True),
    ("SAVEPOINT sa_savepoint_1", True),
    ("SET LOCAL synchronous_commit = off", True),
    ("CREATE TABLE t (a int)", True),
])
def test_which_statements_open_a_transaction(statement, needs):
    assert needs_transaction(statement) is needs


@pytest.fixture
def pg_table():
    engine = make_engine(_pg_url(), pool_size=2, max_overflow=0)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS deferred_begin"))
        conn.execute(text("CREATE TABLE deferred_begin (id int PRIMARY KEY, note text)"))
        conn.execute(text("INSERT INTO deferred_begin VALUES (1, 'one'), (2, 'two')"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE deferred_begin"))
    engine.dispose()


def _in_transaction(conn) -> bool:
    return conn.connection.driver_connection.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE


@needs_pg
def test_reads_open_no_transaction_and_the_first_write_opens_one_that_rolls_back_whole(pg_table):
    with pg_table.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deferred_begin")).scalar_one() == 2
        assert not _in_transaction(conn)  # nothing to commit: no BEGIN, no COMMIT round trip
        conn.execute(text("UPDATE deferred_begin SET note = 'changed' WHERE id = 1"))
        assert _in_transaction(conn)
        conn.execute(text("INSERT INTO deferred_begin VALUES (3, 'three')"))
        # this transaction sees its own writes; nobody else does before the commit
        assert conn.execute(text("SELECT count(*) FROM deferred_begin")).scalar_one() == 3
        with pg_table.connect() as other:
            assert other.execute(text("SELECT count(*) FROM deferred_begin")).scalar_one() == 2
        conn.rollback()
        assert not _in_transaction(conn)
        assert conn.execute(text("SELECT note FROM deferred_begin WHERE id = 1")).scalar_one() == "one"
        assert conn.execute(text("SELECT count(*) FROM deferred_begin")).scalar_one() == 2


@needs_pg
def test_a_locking_select_holds_its_rows_until_the_commit(pg_table):
    claim = text("SELECT id FROM deferred_begin ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
    with pg_table.connect() as first, pg_table.connect() as second:
        assert first.execute(claim).scalar_one() == 1
        assert _in_transaction(first)
        assert second.execute(claim).scalar_one() == 2  # row 1 stays locked by the first
        first.commit()
        second.rollback()
        assert second.execute(claim).scalar_one() == 1
        second.commit()


@needs_pg
def test_a_batch_of_one_write_opens_the_transaction_in_its_pipeline(pg_table):
    with pg_table.connect() as conn:
        conn.execute(text("SELECT 1"))
        batch = Batch(conn)
        batch.add("UPDATE deferred_begin SET note = %s WHERE id = %s", ("batched", 2))
        batch.run()
        assert _in_transaction(conn)
        conn.rollback()
        assert conn.execute(text("SELECT note FROM deferred_begin WHERE id = 2")).scalar_one() == "two"
        batch.add("UPDATE deferred_begin SET note = %s WHERE id = %s", ("batched", 2))
        batch.run()
        conn.commit()
    with pg_table.connect() as conn:
        assert conn.execute(text("SELECT note FROM deferred_begin WHERE id = 2")).scalar_one() == "batched"
