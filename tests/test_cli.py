"""The ``huying`` CLI: scenario 1 end to end, deployment, the virtual clock, errors and exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from engine.models import AuditEvent
from web.cli import main


@pytest.fixture
def cli(db_url, services):
    """Run ``huying`` in-process against the test database with the virtual clock."""
    env = {"HUYING_DATABASE_URL": db_url, "HUYING_CLOCK": "virtual"}

    def run(*args, expect=0):
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == expect, (args, result.output, result.stderr if hasattr(result, "stderr") else "")
        return result

    def data(*args):
        return json.loads(run(*args, "--json").stdout)

    run.json = data
    return run


def _item(cli, user, task=None):
    items = cli.json("work", "list", "--user", user)
    items = [i for i in items if task is None or i["task"] == task]
    assert len(items) == 1, items
    return str(items[0]["id"])


def test_scenario_1_through_the_cli(cli):
    filed = cli.json("call", "file", "--user", "qingnian.grid", "--category", "lift_install", "--direct",
                     "--description", "电缆阻碍加装电梯", "--location", "东园二街1号", "--photo", "cables.jpg")
    no = filed["number"]
    assert filed["status"] == "triage"
    out = cli.json("work", "do", _item(cli, "xiagang.dispatcher"), "dispatch", "--user", "xiagang.dispatcher",
                   "--data", json.dumps({"lead": "power", "assists": ["telecom", "police"]}))
    assert sorted(o["unit"] for o in out["opened"]) == ["police", "power", "telecom"]
    for dept in ("power", "telecom", "police"):
        cli("work", "do", _item(cli, f"{dept}.staff"), "sign", "--user", f"{dept}.staff")
    cli("clock", "advance", "1d")
    cli("work", "do", _item(cli, "power.staff"), "contact", "--user", "power.staff", "--data", '{"note": "现场会"}')
    cli("clock", "advance", "3d")
    for dept in ("telecom", "police", "power"):
        cli("work", "do", _item(cli, f"{dept}.staff"), "done", "--user", f"{dept}.staff",
            "--data", json.dumps({"result": f"{dept} 线路已迁移"}))
    cli("work", "do", _item(cli, "qingnian.grid"), "pass", "--user", "qingnian.grid")
    cli("work", "do", _item(cli, "xiagang.dispatcher"), "rate", "--user", "xiagang.dispatcher",
        "--data", '{"satisfaction": "satisfied", "resolved": true}')
    shown = cli.json("call", "show", no)
    assert shown["status"] == "closed" and shown["open_items"] == []
    assert shown["closed_at"].startswith("2026-10-16") and shown["closed_at"].endswith("+08:00")
    text = cli("call", "show", no).stdout
    assert "status=closed" in text and "feedback.rate" in text and "triage → dispatched" in text


def test_call_show_lists_open_items_with_their_actions(cli):
    no = cli.json("call", "file", "--user", "qingnian.grid", "--category", "road_flooding",
                  "--description", "积水", "--location", "港前路")["number"]
    text = cli("call", "show", no).stdout
    assert "街镇研判 Street triage" in text and "void, merge, handle, dispatch, escalate" in text


def test_errors_exit_non_zero_with_a_clear_message(cli):
    r = cli("call", "file", "--user", "qingnian.grid", "--category", "ufo", "--description", "x",
            "--location", "y", expect=3)
    assert "unknown category 'ufo'" in r.stderr
    r = cli("call", "file", "--user", "water.staff", "--category", "road_flooding", "--description", "x",
            "--location", "y", expect=4)
    assert "cannot file calls" in r.stderr
    r = cli("work", "do", "1", "sign", "--user", "water.staff", "--data", "{not json", expect=3)
    assert "--data is not valid JSON" in r.stderr
    r = cli("work", "do", "424242", "sign", "--user", "water.staff", expect=5)
    assert "no work item 424242" in r.stderr
    r = cli("call", "show", "HY000", expect=5)


def test_bpmn_validate_and_deploy(cli, tmp_path):
    bpmn = str(PROJECT_ROOT / "bpmn" / "call_dispatch.bpmn")
    dmn = str(PROJECT_ROOT / "bpmn" / "routing.dmn")
    alt = str(PROJECT_ROOT / "tests" / "data" / "routing_alt.dmn")
    assert "valid: call_dispatch" in cli("bpmn", "validate", bpmn, dmn).stdout
    broken = tmp_path / "call_dispatch.bpmn"
    broken.write_text(Path(bpmn).read_text(encoding="utf-8").replace('name="owner" value="street" />', "/>", 1))
    r = cli("bpmn", "deploy", str(broken), dmn, expect=7)
    assert "street_triage" in r.stderr and "owner" in r.stderr
    assert "unchanged" in cli("bpmn", "deploy", bpmn, dmn).stdout
    r = cli("bpmn", "deploy", bpmn, alt, "--user", "water.staff", expect=4)
    assert "call_dispatch: version 2" in cli("bpmn", "deploy", bpmn, alt, "--note", "road flooding to district").stdout
    listing = cli("bpmn", "list").stdout
    assert "call_dispatch v1" in listing and "call_dispatch v2" in listing and "road flooding" in listing
    no = cli.json("call", "file", "--user", "qingnian.grid", "--category", "road_flooding",
                  "--description", "x", "--location", "y")["number"]
    assert cli.json("call", "show", no)["level"] == "district"


BAD_FILES = {  # a bad copy of a shipped file: (file, old text, new text) and what the message must name
    "routing rule": ("routing.dmn", '<text>"gas_leak"</text>', '<text>"gas_leak" ((( ==</text>',
                     ["routing.dmn line 21", "DecisionTable_routing", "rule 1 'Rule_gas_leak'", "Input_category"]),
    "boundary event": ("call_dispatch.bpmn", 'attachedToRef="street_triage"', 'attachedToRef="street_triag"',
                       ["boundaryEvent 'street_triage_sla_warning'", "attachedToRef 'street_triag'"]),
    "sequence flow": ("call_dispatch.bpmn", 'targetRef="route_call"', 'targetRef="route"',
                      ["sequenceFlow 'flow_call_filed__route_call'", "targetRef 'route'"]),
}


def _deploy_audit(services):
    with services.session_factory() as s:
        return [(e.actor, e.subject, e.old, e.new["version"]) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "definition.deployed").order_by(AuditEvent.id))]


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bpmn_validate_and_deploy_refuse_a_bad_file_naming_the_element(cli, services, tmp_path, case):
    name, old, new, needles = BAD_FILES[case]
    files = {n: str(PROJECT_ROOT / "bpmn" / n) for n in ("call_dispatch.bpmn", "routing.dmn")}
    text = Path(files[name]).read_text(encoding="utf-8")
    assert old in text
    (tmp_path / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    files[name] = str(tmp_path / name)
    r = cli("bpmn", "validate", *files.values(), expect=7)
    assert r.stdout == "" and all(n in r.stderr for n in needles), r.stderr
    listed, audited = cli("bpmn", "list").stdout, _deploy_audit(services)
    r = cli("bpmn", "deploy", *files.values(), expect=7)
    assert all(n in r.stderr for n in needles), r.stderr
    assert cli("bpmn", "list").stdout == listed and "call_dispatch v2" not in listed
    assert _deploy_audit(services) == audited, "a refused deploy writes no audit event"


def test_bpmn_deploy_is_audited_as_the_deploying_user(cli, services):
    alt = str(PROJECT_ROOT / "tests" / "data" / "routing_alt.dmn")
    bpmn = str(PROJECT_ROOT / "bpmn" / "call_dispatch.bpmn")
    assert _deploy_audit(services) == [("demo", "call_dispatch", None, 1)]
    assert "call_dispatch: version 2" in cli("bpmn", "deploy", bpmn, alt, "--user", "admin").stdout
    assert "unchanged" in cli("bpmn", "deploy", bpmn, alt).stdout
    assert _deploy_audit(services) == [("demo", "call_dispatch", None, 1),
                                       ("admin", "call_dispatch", {"version": 1}, 2)]


def test_the_virtual_clock_is_shared_and_only_moves_forward(cli):
    assert cli("clock", "show").stdout.strip() == "2026-10-12T09:00:00+08:00"
    assert cli("clock", "set", "2026-10-13T10:30").stdout.strip() == "2026-10-13T10:30:00+08:00"
    assert cli("clock", "advance", "90m").stdout.strip() == "2026-10-13T12:00:00+08:00"
    assert cli("clock", "show").stdout.strip() == "2026-10-13T12:00:00+08:00"
    assert "only moves forward" in cli("clock", "set", "2026-01-01T00:00", expect=3).stderr
    assert "not a duration" in cli("clock", "advance", "soon", expect=3).stderr


def test_bad_settings_stop_with_a_message(db_url):
    r = CliRunner().invoke(main, ["clock", "show"], env={"HUYING_DATABASE_URL": db_url, "HUYING_CLOCK": "sundial"})
    assert r.exit_code == 9 and "HUYING_CLOCK='sundial'" in r.stderr


def test_the_wall_clock_cannot_be_moved(db_url):
    r = CliRunner().invoke(main, ["clock", "advance", "1h"], env={"HUYING_DATABASE_URL": db_url,
                                                                  "HUYING_CLOCK": "wall"})
    assert r.exit_code == 3 and "wall clock" in r.stderr


def test_calendar_due_prints_the_worked_examples(cli):
    assert cli("calendar", "due", "--from", "2026-09-30T17:00", "--working-hours", "2").stdout.strip() \
        == "2026-10-08T10:00:00+08:00"
    assert cli("calendar", "due", "--from", "2026-09-30T10:00+08:00", "--working-days", "5").stdout.strip() \
        == "2026-10-13T18:00:00+08:00"
    r = cli("calendar", "due", "--from", "2026-12-30T10:00", "--working-days", "3")
    assert r.stdout.strip() == "2027-01-04T18:00:00+08:00" and "beyond the official holiday data" in r.stderr
    cli("calendar", "set", "2027-01-01", "--holiday", "--note", "元旦")
    cli("calendar", "set", "2027-01-02", "--holiday", "--note", "元旦")
    r = cli("calendar", "due", "--from", "2026-12-30T10:00", "--working-days", "3")
    assert r.stdout.strip() == "2027-01-05T18:00:00+08:00" and "beyond" in r.stderr  # Jan 4, 5 still assumed
    assert "2027-01-01  holiday  元旦" in cli("calendar", "status").stdout
    assert "give exactly one" in cli("calendar", "due", "--from", "2026-10-12T09:00", expect=3).stderr
    assert "not an admin" in cli("calendar", "set", "2027-01-04", "--workday", "--user", "water.staff", expect=4).stderr


def test_sla_show_and_deploy(cli, tmp_path):
    assert "resolve" in cli("sla", "show").stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"match": {"stage": "sign"}, "target": {"fortnights": 1}}]}')
    assert "invalid SLA policy" in cli("sla", "deploy", str(bad), expect=3).stderr
    good = tmp_path / "good.json"
    good.write_text('{"rules": [{"match": {"stage": "resolve"}, "target": {"working_days": 4}}]}')
    assert "version 2" in cli("sla", "deploy", str(good)).stdout


# ---- API keys --------------------------------------------------------------------------------------
def test_apikey_create_list_revoke_and_a_revoked_key_is_refused(cli, app):
    r = cli("apikey", "create", "--name", "civic-app")
    key = r.stdout.strip()
    assert key.startswith("hy_") and len(key) > 30 and "\n" not in key
    assert "files calls as huangpu.hotline" in r.stderr and "shown only this once" in r.stderr
    listed = cli.json("apikey", "list")
    assert [(k["name"], k["user"], k["prefix"], k["created_by"], k["revoked_at"]) for k in listed] == \
        [("civic-app", "huangpu.hotline", key[:10], "admin", None)]
    assert key not in cli("apikey", "list").stdout, "the key itself is never shown again"
    assert "active" in cli("apikey", "list").stdout

    client = app.test_client()
    form = {"api_key": key, "service_code": "noise", "description": "楼上装修噪声", "address_string": "港湾路 1 号",
            "attribute[community]": "puhui"}
    r = client.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 200, r.get_json()
    assert "revoked" in cli("apikey", "revoke", str(listed[0]["id"])).stdout
    r = client.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 403 and "revoked" in r.get_json()[0]["description"]
    assert cli.json("apikey", "list")[0]["revoked_at"].endswith("+08:00")
    assert "REVOKED" in cli("apikey", "list").stdout


def test_apikey_errors(cli):
    made = cli.json("apikey", "create", "--name", "grid-app", "--user", "qingnian.grid")
    assert made["user"] == "qingnian.grid" and made["key"].startswith("hy_")
    assert "already exists" in cli("apikey", "create", "--name", "grid-app", expect=6).stderr
    assert "cannot file calls" in cli("apikey", "create", "--name", "x", "--user", "water.staff", expect=3).stderr
    assert "no active user" in cli("apikey", "create", "--name", "x", "--user", "nobody", expect=5).stderr
    assert "not an admin" in cli("apikey", "create", "--name", "x", "--as", "water.staff", expect=4).stderr
    assert "not an admin" in cli("apikey", "list", "--as", "water.staff", expect=4).stderr
    assert "not an admin" in cli("apikey", "revoke", "1", "--as", "water.staff", expect=4).stderr
    assert "no API key 999" in cli("apikey", "revoke", "999", expect=5).stderr
    assert "1-100 characters" in cli("apikey", "create", "--name", " ", expect=3).stderr
    assert [k["name"] for k in cli.json("apikey", "list")] == ["grid-app"], "nothing written by the failures"
