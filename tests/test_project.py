"""Project-level checks: layering contracts, migrations match the models, a real server answers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from config.settings import PROJECT_ROOT, load_settings
from engine.db import Base
from web.bootstrap import build_services, upgrade_database

BIN = Path(sys.executable).parent


def test_layering_contracts_hold():
    """web -> workflows -> engine; only engine imports SpiffWorkflow; no Flask below web."""
    result = subprocess.run([str(BIN / "lint-imports")], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_migrations_create_exactly_the_models_schema(backend, tmp_path):
    if backend == "postgresql":
        from sqlalchemy import text

        from .conftest import _pg_url
        services = build_services(load_settings({}, database_url=_pg_url()))
        with services.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        services = build_services(load_settings({}, database_url=f"sqlite:///{tmp_path / 'm.sqlite3'}"))
    upgrade_database(services)
    upgrade_database(services)  # idempotent
    with services.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        assert "alembic_version" in inspect(conn).get_table_names()
    _assert_audit_log_is_append_only(services.engine)
    services.engine.dispose()


def _assert_audit_log_is_append_only(engine):
    """Rows go in; no UPDATE, DELETE (or TRUNCATE) takes them out again, whoever sends it."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO engine_audit_event (occurred_at, actor, action, subject) "
                          "VALUES ('2026-10-12 01:00:00', 'tester', 'call.filed', 'HY1')"))
    refused = ["UPDATE engine_audit_event SET actor = 'someone else'", "DELETE FROM engine_audit_event"]
    if engine.dialect.name == "postgresql":
        refused.append("TRUNCATE engine_audit_event")
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM engine_audit_event WHERE subject = 'HY1'")).scalars().all() == ["tester"]


def test_the_audit_log_is_append_only(services):
    """The same for a database made from the models (as the tests' and the benchmark's are)."""
    _assert_audit_log_is_append_only(services.engine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port, path, token, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _post(port, path, body, token=None):
    return _request(port, path, token, body)


def _get(port, path, token):
    return _request(port, path, token)


def test_make_run_steps_serve_a_fresh_database(tmp_path):
    """What `make run` does, as separate processes: migrate, load the demo if empty (twice), serve."""
    env = {**os.environ, "HUYING_DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}", "HUYING_CLOCK": "virtual",
           "HUYING_SCHEDULER_INTERVAL_SECONDS": "1"}
    env.pop("HUYING_TEST_DATABASE_URL", None)
    huying = str(BIN / "huying")
    subprocess.run([huying, "db", "upgrade"], env=env, check=True, capture_output=True)
    first = subprocess.run([huying, "demo", "load", "--if-empty"], env=env, check=True, capture_output=True, text=True)
    again = subprocess.run([huying, "demo", "load", "--if-empty"], env=env, check=True, capture_output=True, text=True)
    assert "demo district loaded" in first.stdout and "not loaded" in again.stdout
    port = _free_port()
    server = subprocess.Popen([huying, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert body is not None and '"status":"ok"' in body.replace(" ", "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:  # -> the sign-in page
            page = resp.read().decode()
        assert resp.url.endswith("/login?next=/") and "有呼必应" in page and 'name="password"' in page
        # the REST API through the real server: sign in, file a call, find it in the street's queue
        token = _post(port, "/api/v1/auth/tokens", {"username": "qingnian.grid", "password": "huying-demo"})["token"]
        call = _post(port, "/api/v1/calls", {"category": "noise", "description": "夜间施工噪声", "location": "港前路"},
                     token)
        assert call["status"] == "triage" and call["number"].startswith("HY")
        dispatcher = _post(port, "/api/v1/auth/tokens", {"username": "xiagang.dispatcher",
                                                         "password": "huying-demo"})["token"]
        queue = _get(port, "/api/v1/work", dispatcher)
        assert [e["call"]["number"] for e in queue["items"]] == [call["number"]]
        assert len(_get(port, "/api/v1/openapi.json", None)["paths"]) >= 15
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


def _pins(lines) -> dict[str, str]:
    from packaging.requirements import Requirement

    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            [spec] = req.specifier
            assert spec.operator == "==", f"{line}: not an exact pin"
            pins[req.name.lower().replace("_", "-")] = spec.version
    return pins


def test_every_installed_package_is_pinned_and_setup_cfg_agrees_with_the_constraints():
    """`make` installs with constraints.txt: every distribution in the venv (dependencies of dependencies
    too) is pinned there at the version installed, and setup.cfg's own pins say the same."""
    import configparser
    from importlib.metadata import distributions

    constraints = _pins((PROJECT_ROOT / "constraints.txt").read_text().splitlines())
    cfg = configparser.ConfigParser()
    cfg.read(PROJECT_ROOT / "setup.cfg")
    direct = _pins(cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines())
    assert {k: v for k, v in direct.items() if constraints.get(k) != v} == {}
    # what huying[test] needs, and what that needs in turn, as installed
    from packaging.requirements import Requirement

    installed = {d.metadata["Name"].lower().replace("_", "-"): d for d in distributions()}
    requested = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
    needed, todo, seen = {}, [Requirement(r) for r in requested if r.strip()], set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if (name, tuple(sorted(req.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(req.extras))))
        dist = installed[name]
        needed[name] = dist.version
        for text in dist.requires or ():
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (*req.extras, "")):
                todo.append(sub)
    assert len(needed) > len(direct)
    assert {k: v for k, v in needed.items() if constraints.get(k) != v} == {}
