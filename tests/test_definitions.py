"""Deploying process definitions: validation (also of hostile XML), versions, routing swaps."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config.settings import PROJECT_ROOT
from engine.definitions import SPEC_CACHE, bundle_hash, deploy, list_definitions, parse_bundle, read_files
from engine.errors import InvalidDefinition
from engine.models import AuditEvent, ProcessDefinition, ProcessInstance
from workflows.models import Call

BPMN = PROJECT_ROOT / "bpmn" / "call_dispatch.bpmn"
DMN = PROJECT_ROOT / "bpmn" / "routing.dmn"
ALT_DMN = PROJECT_ROOT / "tests" / "data" / "routing_alt.dmn"


def _bundle(bpmn_text=None, dmn=DMN):
    return {"call_dispatch.bpmn": bpmn_text if bpmn_text is not None else BPMN.read_text(encoding="utf-8"),
            "routing.dmn": dmn.read_text(encoding="utf-8")}


def test_the_shipped_process_parses_with_its_routing_table():
    parsed = parse_bundle(read_files([str(BPMN), str(DMN)]))
    assert list(parsed) == ["call_dispatch"]
    assert set(parsed["call_dispatch"].subprocess_specs) == {"department_work"}


BAD = {
    "not well-formed": (lambda x: x.replace("</bpmn:definitions>", ""), "not well-formed"),
    "missing owner": (lambda x: x.replace('<spiffworkflow:property name="owner" value="street" />', "", 1),
                      "userTask 'street_triage'"),
    "gateway flow without condition": (
        lambda x: x.replace("<bpmn:conditionExpression>decision == 'void'</bpmn:conditionExpression>", ""),
        "flow_gw_triage__call_voided"),
    "broken condition": (lambda x: x.replace("decision == 'void'", "decision === 'void'"),
                         "flow_gw_triage__call_voided"),
    "broken script": (lambda x: x.replace("rework_count = rework_count + 1", "rework_count = = 1"),
                      "count_rework"),
    "schema violation": (lambda x: x.replace('<bpmn:userTask id="verify"', '<bpmn:userTask id="9verify"', 1),
                         "line"),
    "unknown called process": (lambda x: x.replace('calledElement="department_work"', 'calledElement="nope"'),
                               "nope"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_diagram_is_refused_naming_what_is_wrong(case):
    mutate, needle = BAD[case]
    with pytest.raises(InvalidDefinition) as err:
        parse_bundle(_bundle(mutate(BPMN.read_text(encoding="utf-8"))))
    assert needle in err.value.message


def _edit(text: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` replaced (which must be there: a test of an unchanged file proves nothing)."""
    assert old in text, old
    return text.replace(old, new, 1)


# Dangling references in the shipped diagram: each one named, with the id it names, in the message.
# (SpiffWorkflow drops the first four silently or, for a flow, blames the task the flow leaves.)
BAD_REFERENCES = {
    "boundary event on a missing task": (
        ('attachedToRef="community_handle" cancelActivity="false"', 'attachedToRef="community_handel" '
                                                                    'cancelActivity="false"'),
        ["boundaryEvent 'community_handle_sla_warning'", "attachedToRef 'community_handel'"]),
    "boundary event on a gateway": (
        ('id="verify_sla_breach" name="超时" attachedToRef="verify"', 'id="verify_sla_breach" name="超时" '
                                                                     'attachedToRef="gw_verify"'),
        ["boundaryEvent 'verify_sla_breach'", "exclusiveGateway 'gw_verify'"]),
    "boundary event on a task of the other process": (
        ('attachedToRef="street_triage"', 'attachedToRef="sign"'),
        ["boundaryEvent 'street_triage_sla_warning'", "userTask 'sign'", "process 'department_work'"]),
    "flow to a missing element": (
        ('sourceRef="call_filed" targetRef="route_call"', 'sourceRef="call_filed" targetRef="route_cal"'),
        ["sequenceFlow 'flow_call_filed__route_call'", "targetRef 'route_cal'"]),
    "flow from a missing element": (
        ('sourceRef="call_filed" targetRef="route_call"', 'sourceRef="call_file" targetRef="route_call"'),
        ["sequenceFlow 'flow_call_filed__route_call'", "sourceRef 'call_file'"]),
    "flow into the other process": (
        ('sourceRef="call_filed" targetRef="route_call"', 'sourceRef="call_filed" targetRef="sign"'),
        ["sequenceFlow 'flow_call_filed__route_call'", "targetRef 'sign'", "process 'department_work'"]),
    "default flow missing": (
        ('default="flow_gw_first_level__street_triage"', 'default="flow_gw_first_level__street"'),
        ["exclusiveGateway 'gw_first_level'", "default flow 'flow_gw_first_level__street'"]),
    "default flow of another gateway": (
        ('default="flow_gw_first_level__street_triage"', 'default="flow_gw_verify__count_rework"'),
        ["exclusiveGateway 'gw_first_level'", "default flow 'flow_gw_verify__count_rework'",
         "not a sequence flow leaving it"]),
    "lane naming a missing task": (
        ("<bpmn:flowNodeRef>street_triage</bpmn:flowNodeRef>", "<bpmn:flowNodeRef>street_traige</bpmn:flowNodeRef>"),
        ["lane 'lane_call_dispatch_street'", "flowNodeRef 'street_traige'"]),
    "lane naming a task of the other process": (
        ("<bpmn:flowNodeRef>street_triage</bpmn:flowNodeRef>", "<bpmn:flowNodeRef>sign</bpmn:flowNodeRef>"),
        ["lane 'lane_call_dispatch_street'", "flowNodeRef 'sign'", "process 'department_work'"]),
    "missing signal": (
        ('signalRef="sig_dispute"', 'signalRef="sig_disput"'),
        ["boundaryEvent 'sign_disputed'", "signalRef 'sig_disput'", "sig_dispute"]),
    "missing escalation": (
        ('escalationRef="esc_reassign"', 'escalationRef="esc_reasign"'),
        ["intermediateThrowEvent 'throw_reassign'", "escalationRef 'esc_reasign'"]),
    "missing message": (
        ('<bpmn:signalEventDefinition signalRef="sig_dispute" />',
         '<bpmn:messageEventDefinition messageRef="dispute" />'),
        ["boundaryEvent 'sign_disputed'", "messageRef 'dispute'", "no message"]),
    "missing error": (
        ('<bpmn:escalationEventDefinition escalationRef="esc_supervise" />',
         '<bpmn:errorEventDefinition errorRef="err_supervise" />'),
        ["boundaryEvent 'department_dispatch_supervised'", "errorRef 'err_supervise'"]),
    "missing decision": (
        ("<spiffworkflow:calledDecisionId>routing</", "<spiffworkflow:calledDecisionId>routng</"),
        ["businessRuleTask 'route_call'", "decision 'routng'", "'routing' (routing.dmn)"]),
}


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_a_dangling_reference_is_refused_naming_the_element_and_the_missing_id(case):
    (old, new), needles = BAD_REFERENCES[case]
    with pytest.raises(InvalidDefinition) as err:
        parse_bundle(_bundle(_edit(BPMN.read_text(encoding="utf-8"), old, new)))
    message = err.value.message
    assert message.startswith("call_dispatch.bpmn line ")
    assert all(n in message for n in needles), message
    assert "found two items" not in message and "TypeError" not in message


# Broken routing tables: the decision table, the rule and the input column are named.
BAD_TABLES = {
    "input entry syntax error": (
        ('<text>"gas_leak"</text>', '<text>"gas_leak" ((( ==</text>'),
        ["rule 1 'Rule_gas_leak'", "input column '类别 Category' (Input_category)", '"gas_leak" ((( ==']),
    "input entry that is a statement": (
        ('<inputEntry id="InputEntry_illegal_building_urgent_1">\n          <text>"urgent"</text>',
         '<inputEntry id="InputEntry_illegal_building_urgent_1">\n          <text>urgency = "urgent"</text>'),
        ["rule 4 'Rule_illegal_building_urgent'", "(Input_urgency)"]),
    "broken input-value test": (
        ('<text>"gas_leak"</text>', '<text>? in ("gas_leak",</text>'),
        ["rule 1 'Rule_gas_leak'", "(Input_category)"]),
    "broken input expression": (
        ("<text>urgency</text>", "<text>urgency ===</text>"),
        ["input column '紧急程度 Urgency' (Input_urgency)", "input expression 'urgency ==='"]),
    "rule missing an input entry": (
        ('<inputEntry id="InputEntry_gas_leak_1">\n          <text>-</text>\n        </inputEntry>', ""),
        ["rule 1 'Rule_gas_leak'", "1 input entries for 2 input columns"]),
    # FEEL forms that compile in SpiffWorkflow's Python DMN but never match: refused with the form that works
    "a FEEL list": (
        ('<text>"gas_leak"</text>', '<text>"gas_leak", "gas_smell"</text>'),
        ["rule 1 'Rule_gas_leak'", "never matches", '? in ("gas_leak", "gas_smell")']),
    "a FEEL negation": (
        ('<text>"gas_leak"</text>', '<text>not("gas_leak")</text>'),
        ["rule 1 'Rule_gas_leak'", "never matches", "? != 'gas_leak'"]),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_broken_routing_rule_is_refused_naming_table_rule_and_column(case, tmp_path):
    (old, new), needles = BAD_TABLES[case]
    dmn = tmp_path / "routing.dmn"
    dmn.write_text(_edit(DMN.read_text(encoding="utf-8"), old, new), encoding="utf-8")
    with pytest.raises(InvalidDefinition) as err:
        parse_bundle(_bundle(dmn=dmn))
    message = err.value.message
    assert message.startswith("routing.dmn line ") and "DecisionTable_routing" in message
    assert all(n in message for n in needles), message


def test_a_bundle_must_give_each_decision_once_and_the_decisions_its_diagram_calls():
    with pytest.raises(InvalidDefinition, match="routing_alt.dmn: decision 'routing' is also defined by routing.dmn"):
        parse_bundle({**_bundle(), "routing_alt.dmn": ALT_DMN.read_text(encoding="utf-8")})
    with pytest.raises(InvalidDefinition, match="businessRuleTask 'route_call' .* calls decision 'routing'"):
        parse_bundle({"call_dispatch.bpmn": BPMN.read_text(encoding="utf-8")})
    no_decision = re.sub(r"<decision .*</decision>", "", DMN.read_text(encoding="utf-8"), flags=re.S)
    with pytest.raises(InvalidDefinition, match="routing.dmn: 0 decisions in this file"):
        parse_bundle({**_bundle(), "routing.dmn": no_decision})


def test_unary_tests_and_expressions_in_input_entries_validate_and_route(district, services, tmp_path):
    """The forms SpiffWorkflow's DMN engine runs: ``-``, a value, an operator and its right side, an expression of
    ``?`` (the input value)."""
    text = DMN.read_text(encoding="utf-8")
    text = _edit(text, '<text>"gas_leak"</text>', '<text>? in ("gas_leak", "gas_smell")</text>')
    text = _edit(text, '<inputEntry id="InputEntry_gas_leak_1">\n          <text>-</text>',
                 '<inputEntry id="InputEntry_gas_leak_1">\n          <text>!= "no such urgency"</text>')
    text = _edit(text, '<text>"road_collapse"</text>', '<text>== "road_collapse"</text>')
    dmn = tmp_path / "routing.dmn"
    dmn.write_text(text, encoding="utf-8")
    with services.session_factory() as s:
        [r] = deploy(s, _bundle(dmn=dmn), at=services.clock.now(), actor="admin")
        s.commit()
    assert (r.version, r.created) == (2, True)
    assert (district.call(district.file(category="gas_leak")).suggested_lead,
            district.call(district.file(category="road_collapse")).suggested_lead) == ("gas", "municipal")


def _deployed(services):
    with services.session_factory() as s:
        versions = [(d.process_id, d.version, d.sha256) for d in list_definitions(s)]
        audited = s.scalar(select(func.count()).select_from(AuditEvent))
        return versions, audited


@pytest.mark.parametrize("case", ["input entry syntax error", "boundary event on a missing task",
                                  "flow to a missing element"])
def test_a_refused_deploy_leaves_the_deployed_version_untouched_and_writes_no_audit(district, services, case,
                                                                                      tmp_path):
    bpmn, dmn = BPMN.read_text(encoding="utf-8"), DMN
    if case in BAD_TABLES:
        dmn = tmp_path / "routing.dmn"
        dmn.write_text(_edit(DMN.read_text(encoding="utf-8"), *BAD_TABLES[case][0]), encoding="utf-8")
    else:
        bpmn = _edit(bpmn, *BAD_REFERENCES[case][0])
    before = _deployed(services)
    with services.session_factory() as s:
        with pytest.raises(InvalidDefinition):
            deploy(s, _bundle(bpmn, dmn=dmn), at=services.clock.now(), actor="admin")
        s.rollback()
    assert _deployed(services) == before
    no = district.file(category="gas_leak")  # new calls still start and route on the deployed version
    assert district.call(no).suggested_lead == "gas"


def _deploy_events(services):
    with services.session_factory() as s:
        return [(e.actor, e.subject, e.old, e.new, e.detail) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "definition.deployed").order_by(AuditEvent.id))]


def test_a_deploy_is_audited_with_who_the_old_and_the_new_version(services):
    [demo] = _deploy_events(services)  # the demo district's first version: nothing before it
    files = ["call_dispatch.bpmn", "routing.dmn"]
    with services.session_factory() as s:
        [v1] = list_definitions(s)
    assert demo == ("demo", "call_dispatch", None, {"version": 1, "sha256": v1.sha256, "files": files},
                    {"note": "demo district"})
    with services.session_factory() as s:
        deploy(s, _bundle(dmn=ALT_DMN), at=services.clock.now(), actor="admin", note="road flooding to district")
        s.commit()
        v2 = list_definitions(s)[-1]
    assert _deploy_events(services)[1:] == [
        ("admin", "call_dispatch", {"version": 1}, {"version": 2, "sha256": v2.sha256, "files": files},
         {"note": "road flooding to district"})]
    with services.session_factory() as s:  # the same bundle again is no new version, and no event
        [r] = deploy(s, _bundle(dmn=ALT_DMN), at=services.clock.now(), actor="admin")
        s.commit()
    assert not r.created and len(_deploy_events(services)) == 2


XXE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
<bpmn:process id="p" isExecutable="true"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process>
</bpmn:definitions>"""

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
<bpmn:process id="p" isExecutable="true"><bpmn:documentation>&lol4;</bpmn:documentation></bpmn:process>
</bpmn:definitions>"""


@pytest.mark.parametrize("xml", [XXE, BOMB], ids=["external-entity", "entity-expansion-bomb"])
def test_hostile_xml_is_refused_before_parsing(xml):
    with pytest.raises(InvalidDefinition, match="unsafe XML"):
        parse_bundle({"evil.bpmn": xml})
    with pytest.raises(InvalidDefinition, match="unsafe XML"):
        parse_bundle({"call_dispatch.bpmn": BPMN.read_text(encoding="utf-8"), "evil.dmn": xml})


def test_only_bpmn_and_dmn_files(tmp_path):
    with pytest.raises(InvalidDefinition, match="only .bpmn and .dmn"):
        parse_bundle({"notes.txt": "<a/>"})


def test_a_failed_deploy_leaves_the_deployed_version_untouched(services):
    with services.session_factory() as s:
        before = [(d.process_id, d.version, d.sha256) for d in list_definitions(s)]
        with pytest.raises(InvalidDefinition):
            deploy(s, _bundle(BPMN.read_text(encoding="utf-8").replace("</bpmn:definitions>", "")),
                   at=services.clock.now(), actor="admin")
        s.rollback()
        assert [(d.process_id, d.version, d.sha256) for d in list_definitions(s)] == before


def test_deploying_the_same_bundle_twice_is_not_a_new_version(services):
    with services.session_factory() as s:
        [r] = deploy(s, _bundle(), at=services.clock.now(), actor="admin")
        assert (r.version, r.created) == (1, False)


def test_running_calls_stay_on_their_version_and_new_calls_take_the_new_one(district, services):
    old = district.file("qingnian.grid", category="road_flooding")
    with services.session_factory() as s:
        [r] = deploy(s, _bundle(dmn=ALT_DMN), at=services.clock.now(), actor="admin", note="new routing")
        s.commit()
    assert (r.version, r.created) == (2, True)
    new = district.file("qingnian.grid", category="road_flooding")
    with services.session_factory() as s:
        versions = {c.number: s.get(ProcessInstance, c.instance_id).definition.version
                    for c in s.scalars(select(Call).where(Call.number.in_([old, new])))}
        stored = s.scalar(select(ProcessDefinition).where(ProcessDefinition.version == 2))
        assert set(stored.files) == {"call_dispatch.bpmn", "routing.dmn"} and len(stored.sha256) == 64
    assert versions == {old: 1, new: 2}
    # the old call keeps working on version 1
    district.do(old, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    assert district.open_tasks(old) == [("sign", "water")]


def test_swapping_the_routing_table_changes_where_a_new_call_goes(district, services):
    before = district.file("qingnian.grid", category="road_flooding")
    assert district.open_tasks(before) == [("street_triage", "xiagang")]
    with services.session_factory() as s:
        deploy(s, _bundle(dmn=ALT_DMN), at=services.clock.now(), actor="admin")
        s.commit()
    after = district.file("qingnian.grid", category="road_flooding")
    assert district.open_tasks(after) == [("district_coordinate", "huangpu")]
    call = district.call(after)
    assert (call.level, call.suggested_lead, call.suggested_assists) == ("district", "housing", ["transport"])


def test_stored_specs_restore_without_reparsing(services):
    from engine.definitions import SPEC_CACHE
    from engine.spiff import load_specs

    with services.session_factory() as s:
        [d] = list_definitions(s)
        parsed = load_specs(d.process_id, d.spec_json)
        assert parsed.spec.name == "call_dispatch" and "department_work" in parsed.subprocess_specs
        SPEC_CACHE.clear()
        assert SPEC_CACHE.get(d).spec.name == "call_dispatch"


def test_a_version_stored_before_a_rule_was_added_still_loads():
    """Re-parsing a stored version (e.g. after a SpiffWorkflow upgrade) must not strand the calls running on it."""
    files = _bundle(_edit(BPMN.read_text(encoding="utf-8"), "<bpmn:flowNodeRef>street_triage<",
                          "<bpmn:flowNodeRef>street_traige<"))
    with pytest.raises(InvalidDefinition, match="street_traige"):
        parse_bundle(files)
    stored = ProcessDefinition(id=424242, process_id="call_dispatch", version=7, sha256=bundle_hash(files),
                               files=files, spec_json="{}")  # a spec this SpiffWorkflow cannot read
    assert set(SPEC_CACHE.get(stored).subprocess_specs) == {"department_work"}


def test_the_diagram_has_diagram_interchange_for_every_element():
    from lxml import etree

    root = etree.parse(str(BPMN))
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
          "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
    drawn = set(root.xpath("//bpmndi:BPMNShape/@bpmnElement | //bpmndi:BPMNEdge/@bpmnElement", namespaces=ns))
    elements = set(root.xpath("//bpmn:process/*[@id][not(self::bpmn:laneSet)]/@id | //bpmn:lane/@id",
                              namespaces=ns))
    assert elements and elements <= drawn, sorted(elements - drawn)
    lanes = root.xpath("//bpmn:process[@id='call_dispatch']//bpmn:lane/@name", namespaces=ns)
    assert lanes == ["community", "street", "department", "district", "verification"]


def test_shipped_files_are_what_the_demo_deploys():
    assert sorted(p.name for p in (PROJECT_ROOT / "bpmn").iterdir() if p.suffix in (".bpmn", ".dmn")) == \
        ["call_dispatch.bpmn", "routing.dmn"]
    assert Path(ALT_DMN).exists()


def test_a_human_task_in_no_lane_is_refused():
    """The lane says which role works a task: a user task left out of every lane would be in nobody's queue."""
    bpmn = _edit(BPMN.read_text(encoding="utf-8"), "        <bpmn:flowNodeRef>sign</bpmn:flowNodeRef>\n", "")
    with pytest.raises(InvalidDefinition, match="userTask 'sign' .* is in no lane"):
        parse_bundle(_bundle(bpmn))
