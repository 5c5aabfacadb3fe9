"""The engine on its own: the BPMN run in memory with save/restore, event scoping, uncaught events."""
from __future__ import annotations

import pytest
import zstandard
from SpiffWorkflow.util.task import TaskState

from config.settings import PROJECT_ROOT
from engine.definitions import parse_bundle, read_files
from engine.errors import ProcessError
from engine.runtime import ProcessRuntime
from engine.spiff import deliver_to_boundary, dump_state, load_state

START = {"call": "T1", "category": "lift_install", "urgency": "normal", "community": "qingnian",
         "street": "xiagang", "district": "huangpu", "direct_to_street": True, "level": "street",
         "problem_ticket": False, "reopen_count": 0, "rework_count": 0, "rework": False, "reassign_count": 0}


@pytest.fixture(scope="module")
def parsed():
    bundle = read_files([str(PROJECT_ROOT / "bpmn/call_dispatch.bpmn"), str(PROJECT_ROOT / "bpmn/routing.dmn")])
    return parse_bundle(bundle)["call_dispatch"]


class Run:
    """Drives the workflow, saving and restoring it between every step."""

    def __init__(self, parsed):
        self.parsed = parsed
        wf = parsed.new_workflow(dict(START))
        wf.do_engine_steps()
        self.blob = dump_state(wf)

    @property
    def wf(self):
        return load_state(self.blob, self.parsed)

    def ready(self):
        return sorted((t.task_spec.bpmn_id, t.data.get("slot", {}).get("department"))
                      for t in self.wf.get_tasks(state=TaskState.READY, manual=True))

    def complete(self, name, department=None, **data):
        wf = self.wf
        [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == name
                  and (department is None or t.data.get("slot", {}).get("department") == department)]
        task.data.update(data)
        task.run()
        ProcessRuntime._run(wf)
        self.blob = dump_state(wf)

    def deliver(self, name, department, event, payload=None):
        wf = self.wf
        [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == name
                  and t.data.get("slot", {}).get("department") == department]
        caught = deliver_to_boundary(task, event, payload)
        ProcessRuntime._run(wf)
        self.blob = dump_state(wf)
        return caught


def test_scenario_1_in_memory_with_save_and_restore_between_every_step(parsed):
    r = Run(parsed)
    assert r.ready() == [("street_triage", None)]
    r.complete("street_triage", decision="dispatch", slots=[
        {"department": "power", "role": "lead"}, {"department": "telecom", "role": "assist"},
        {"department": "police", "role": "assist"}])
    assert r.ready() == [("sign", "police"), ("sign", "power"), ("sign", "telecom")]
    for d in ("power", "telecom", "police"):
        r.complete("sign", d)
    for d in ("power", "telecom", "police"):
        r.complete("resolve", d, action="done")
    r.complete("verify", passed=True)
    r.complete("feedback", satisfaction="satisfied", resolved=True)
    wf = r.wf
    assert wf.completed
    assert ProcessRuntime._end_event(wf).task_spec.bpmn_id == "call_closed"


def test_state_snapshots_hold_no_spec(parsed):
    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "power", "role": "lead"}])
    assert len(r.blob) < 12_000, "compressed state only: the spec is stored once per version"
    assert b"call_dispatch.bpmn" not in r.blob


def _states(wf) -> list:
    return sorted((str(t.id), t.task_spec.name, t._state, repr(sorted(t.data.items())))
                  for w in (wf, *wf.subprocesses.values()) for t in w.tasks.values())


def test_snapshots_of_the_earlier_formats_still_restore(parsed):
    """Instances saved before the codec changed (data blobs as JSON text; tasks linked by id; gzip'd) go on
    running."""
    import gzip
    import json

    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "power", "role": "lead"}])
    doc = json.loads(zstandard.decompress(r.blob))
    assert doc["format"] == "huying-state-3"

    def by_id(rows):  # the earlier formats name parents and children by task id, not by row
        ids = [row[0] for row in rows]
        ref = lambda x: ids[x] if isinstance(x, int) else x  # noqa: E731
        return [[row[0], None if row[1] is None else ref(row[1]), [ref(c) for c in row[2]], *row[3:]]
                for row in rows]

    v2 = {**doc, "format": "huying-state-2", "workflow": {**doc["workflow"], "tasks": by_id(doc["workflow"]["tasks"])},
          "subprocesses": [[pid, name, {**sub, "tasks": by_id(sub["tasks"])}] for pid, name, sub in doc["subprocesses"]]}
    v1 = {**v2, "format": "huying-state-1", "blobs": [json.dumps(b, separators=(",", ":")) for b in doc["blobs"]]}
    for old in (v2, v1):
        r_old = Run(parsed)
        r_old.blob = gzip.compress(json.dumps(old).encode())  # (gzip, as they were written then)
        assert _states(r_old.wf) == _states(r.wf)
        r_old.complete("sign", "power")
        assert r_old.ready() == [("resolve", "power")]


def test_tasks_linked_by_equal_but_distinct_ids_are_written_by_row(parsed):
    """The snapshot finds a parent or child by the id object itself first; an equal copy works too."""
    import json
    from uuid import UUID

    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "power", "role": "lead"}])
    wf = r.wf
    for task in wf.tasks.values():  # every link a distinct (equal) UUID object
        if task._parent is not None:
            task._parent = UUID(str(task._parent))
        task._children = [UUID(str(c)) for c in task._children]
    blob = dump_state(wf)
    doc = json.loads(zstandard.decompress(blob))
    assert all(isinstance(row[1], int) for row in doc["workflow"]["tasks"][1:])  # rows, not ids
    assert _states(load_state(blob, parsed)) == _states(wf)
    r.blob = blob
    r.complete("sign", "power")
    assert r.ready() == [("resolve", "power")]


def test_values_plain_json_cannot_carry_keep_their_type(parsed):
    """A datetime in task data is not turned into a string: SpiffWorkflow's format takes it."""
    from datetime import UTC, datetime

    r = Run(parsed)
    when = datetime(2026, 10, 12, 9, 30, tzinfo=UTC)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "power", "role": "lead"}],
               noted_at=when)
    [task] = [t for t in r.wf.get_tasks(state=TaskState.READY, manual=True)]
    assert task.data["noted_at"] == when
    r.complete("sign", "power")
    assert r.ready() == [("resolve", "power")]


def test_reassign_escalation_reaches_only_the_disputing_department(parsed):
    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[
        {"department": "urban", "role": "lead"}, {"department": "market", "role": "assist"}])
    assert r.deliver("sign", "urban", "dispute", {"reason": "x"}) == 1
    r.complete("rule_dispute", ruling="reassign", new_department="police")
    assert r.ready() == [("sign", "market"), ("sign", "police")]


def test_non_interrupting_events_stay_armed_interrupting_ones_fire_once(parsed):
    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "water", "role": "lead"}])
    r.complete("sign", "water")
    assert r.deliver("resolve", "water", "extension_request", {"days": 2}) == 1
    assert r.deliver("resolve", "water", "extension_request", {"days": 3}) == 1
    assert r.ready() == [("resolve", "water"), ("rule_extension", "water"), ("rule_extension", "water")]
    assert r.deliver("resolve", "water", "no_such_event") == 0
    assert r.deliver("resolve", "water", "sla_overdue") == 1  # interrupting: up to the district
    assert r.ready() == [("district_coordinate", None)]


def test_rearmed_boundary_events_are_cancelled_with_their_task(parsed):
    r = Run(parsed)
    r.complete("street_triage", decision="dispatch", slots=[{"department": "water", "role": "lead"}])
    assert r.deliver("sign", "water", "sla_warning") == 1
    r.complete("sign", "water")
    wf = r.wf
    waiting = [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.WAITING)
               if t.task_spec.bpmn_id and t.task_spec.bpmn_id.startswith("sign_")]
    assert waiting == []


UNCAUGHT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:escalation id="esc" name="help" escalationCode="help" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:endEvent id="e"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:escalationEventDefinition escalationRef="esc" /></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"""


def test_an_escalation_nothing_catches_is_an_error_not_silence():
    parsed = parse_bundle({"uncaught.bpmn": UNCAUGHT})["p"]
    wf = parsed.new_workflow({})
    with pytest.raises(ProcessError, match="escalation 'help' and nothing caught it"):
        ProcessRuntime._run(wf)


def test_a_failing_script_is_a_process_error_naming_the_task(parsed):
    r = Run(parsed)
    wf = r.wf
    [task] = wf.get_tasks(state=TaskState.READY, manual=True)
    task.data.update(decision="dispatch")  # no "slots": the multi-instance has no input
    task.run()
    with pytest.raises(ProcessError, match="the process failed"):
        ProcessRuntime._run(wf)
