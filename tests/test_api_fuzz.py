"""Property-based run of the OpenAPI document (schemathesis): no input makes the API answer 5xx.

Every operation is called with generated (valid and invalid) parameters and bodies, signed in
as an admin and as a street dispatcher, on one database per module.  Failures are reported by
hypothesis with the smallest input that breaks it.
"""
from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from config.settings import load_settings
from engine.clock import VirtualClock
from web.app import create_app
from web.bootstrap import build_services

USERS = ("admin", "xiagang.dispatcher")


@pytest.fixture(scope="module")
def fuzz_app(sqlite_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "huying.sqlite3"
    shutil.copy(sqlite_template, path)
    services = build_services(load_settings({}, database_url=f"sqlite:///{path}",
                                            attachment_dir=str(path.parent / "attachments"),
                                            ratelimit_enabled="false"), clock=VirtualClock())
    app = create_app(services=services)
    client = app.test_client()
    app.config["FUZZ_TOKENS"] = {
        user: client.post("/api/v1/auth/tokens", json={"username": user, "password": "huying-demo"}).get_json()["token"]
        for user in USERS}
    # something to find: a call in triage
    client.post("/api/v1/calls", json={"category": "noise", "description": "夜间施工", "location": "港前路",
                                       "community": "qingnian"},
                headers={"Authorization": f"Bearer {app.config['FUZZ_TOKENS']['xiagang.dispatcher']}"})
    yield app
    services.engine.dispose()


def _check(app, case) -> None:
    for user in USERS:
        response = case.call(headers={"Authorization": f"Bearer {app.config['FUZZ_TOKENS'][user]}"})
        assert response.status_code < 500, (user, case.method, case.formatted_path, case.query, case.body,
                                            response.status_code, response.text[:500])
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"code", "message", "errors"}, (case.method, case.formatted_path, body)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error(fuzz_app, mode):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            _check(fuzz_app, case)

        try:
            run()
        except Unsatisfiable:  # nothing invalid to generate (no parameters, no body)
            assert mode == GenerationMode.NEGATIVE, operation.label
