"""Database plumbing: pooled PostgreSQL connections the server has closed are replaced unnoticed."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from engine.db import make_engine

from .conftest import PG_URL, _pg_url

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (HUYING_TEST_DATABASE_URL)")


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(pid: int) -> None:
    admin = make_url(_pg_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        # the timeout makes the call wait until the backend has gone
        assert conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0]


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

