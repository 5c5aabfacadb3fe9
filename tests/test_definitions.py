"""Deploying process definitions: validation (also of hostile XML), versions, routing swaps."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from engine.definitions import deploy, list_definitions, parse_bundle, read_files
from engine.errors import InvalidDefinition
from engine.models import ProcessDefinition, ProcessInstance
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
