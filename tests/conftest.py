"""Fixtures: a fresh database with the demo district per test, on SQLite and (if set) PostgreSQL."""
from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import text

import engine.models  # noqa: F401
import workflows.models  # noqa: F401
from config.settings import PROJECT_ROOT, load_settings
from engine.clock import VirtualClock
from engine.db import Base
from engine.definitions import SPEC_CACHE
from web.bootstrap import build_services
from workflows.demo import load_demo
from workflows.passwords import use_test_profile

from .api_helpers import ApiClient
from .helpers import District

# Argon2id at its cheapest for the suite's own databases (hundreds of sign-ins); servers keep the default
use_test_profile()

PG_URL = os.environ.get("HUYING_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _base_pg_url() -> str:
    url = PG_URL or ""
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


_WORKER_DB_READY: set[str] = set()


def _pg_url() -> str:
    """The PostgreSQL test database; with pytest-xdist each worker gets its own (<db>_<worker>), created here."""
    url = _base_pg_url()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or not url:
        return url
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    if name not in _WORKER_DB_READY:
        import psycopg

        admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        _WORKER_DB_READY.add(name)
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A database file with the schema and demo district, copied for every test (fast)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    services = build_services(load_settings({}, database_url=f"sqlite:///{path}"), clock=VirtualClock())
    Base.metadata.create_all(services.engine)
    with services.session_factory() as session:
        load_demo(session, str(PROJECT_ROOT / "config/demo_district.json"), str(PROJECT_ROOT / "bpmn"),
                  at=services.clock.now())
        session.commit()
    services.engine.dispose()
    return path


def _fresh_pg(url: str, clock):
    services = build_services(load_settings({}, database_url=url), clock=clock)
    with services.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    Base.metadata.create_all(services.engine)
    with services.session_factory() as session:
        load_demo(session, str(PROJECT_ROOT / "config/demo_district.json"), str(PROJECT_ROOT / "bpmn"),
                  at=clock.now())
        session.commit()
    return services


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def db_url(backend, sqlite_template, tmp_path):
    if backend == "sqlite":
        path = tmp_path / "huying.sqlite3"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    return _pg_url()


@pytest.fixture
def services(backend, db_url):
    SPEC_CACHE.clear()
    clock = VirtualClock()
    if backend == "postgresql":
        svc = _fresh_pg(db_url, clock)
    else:
        svc = build_services(load_settings({}, database_url=db_url), clock=clock)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def district(services):
    return District(services)


@pytest.fixture
def app(services, tmp_path):
    """The Flask app on the test's database and virtual clock (attachments under tmp_path)."""
    import dataclasses

    from web.app import create_app

    services.settings = dataclasses.replace(services.settings, attachment_dir=str(tmp_path / "attachments"))
    flask_app = create_app(services=services)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def api(app):
    return ApiClient(app)
