"""Write the first version of bpmn/call_dispatch.bpmn with a grid layout.

The .bpmn file is the source of truth: process admins edit it in a BPMN
modeler (bpmn-js, Camunda Modeler) from then on.  This script exists only so
that the initial diagram interchange (DI) coordinates are reproducible; it is
not part of the product and nothing imports it.

    python tools/bpmn_layout.py > bpmn/call_dispatch.bpmn
"""
from __future__ import annotations

import sys
from xml.sax.saxutils import escape, quoteattr

SIZES = {"event": (36, 36), "gateway": (50, 50), "task": (110, 80)}
KIND = {
    "startEvent": "event", "endEvent": "event", "intermediateThrowEvent": "event",
    "exclusiveGateway": "gateway", "userTask": "task", "scriptTask": "task",
    "businessRuleTask": "task", "callActivity": "task",
}
COL_W, ROW_H, LANE_PAD, LANE_LABEL = 160, 120, 20, 30
# Where the payload of each event lands in the catching branch's task data.
SIGNAL_VARS = {"sla_warning": "sla_event", "sla_breach": "sla_event", "sla_overdue": "sla_event",
               "dispute": "dispute", "extension_request": "extension"}
ESCALATION_PAYLOADS = {"reassign": ("new_department", "new_department"),
                       "supervise": ("slot['department']", "supervised_department")}


def event_ext(expression, variable):
    lines = ["    <bpmn:extensionElements>"]
    if expression:
        lines.append(f"      <spiffworkflow:payloadExpression>{escape(expression)}</spiffworkflow:payloadExpression>")
    lines.append(f"      <spiffworkflow:variableName>{variable}</spiffworkflow:variableName>")
    lines.append("    </bpmn:extensionElements>")
    return "\n".join(lines)


class Proc:
    def __init__(self, pid, name, lanes):
        self.pid, self.name, self.lanes = pid, name, lanes  # lanes: [(id, name, rows)]
        self.nodes, self.flows, self.boundaries = {}, [], []

    def node(self, nid, typ, name, lane, col, row=0, **kw):
        self.nodes[nid] = dict(id=nid, typ=typ, name=name, lane=lane, col=col, row=row, **kw)

    def flow(self, src, dst, cond=None, name=None, default=False, via=None):
        fid = f"flow_{src}__{dst}"
        self.flows.append(dict(id=fid, src=src, dst=dst, cond=cond, name=name, via=via))
        if default:
            self.nodes[src]["default"] = fid

    def boundary(self, bid, attached, event, name, interrupting, slot, kind="signal"):
        self.boundaries.append(dict(id=bid, attached=attached, event=event, name=name,
                                    interrupting=interrupting, slot=slot, kind=kind))


def props_xml(props, indent):
    if not props:
        return ""
    pad = " " * indent
    lines = [f"{pad}<bpmn:extensionElements>", f"{pad}  <spiffworkflow:properties>"]
    for k, v in props.items():
        lines.append(f'{pad}    <spiffworkflow:property name="{k}" value={quoteattr(v)} />')
    lines += [f"{pad}  </spiffworkflow:properties>", f"{pad}</bpmn:extensionElements>"]
    return "\n".join(lines) + "\n"


def semantic(p: Proc, signals, escalations):
    out = [f'  <bpmn:process id="{p.pid}" name={quoteattr(p.name)} isExecutable="true">']
    out.append(f'    <bpmn:laneSet id="laneset_{p.pid}">')
    for lid, lname, _rows in p.lanes:
        out.append(f'      <bpmn:lane id="lane_{p.pid}_{lid}" name="{lid}">')
        out.append(f"        <bpmn:documentation>{escape(lname)}</bpmn:documentation>")
        for n in p.nodes.values():
            if n["lane"] == lid:
                out.append(f"        <bpmn:flowNodeRef>{n['id']}</bpmn:flowNodeRef>")
        for b in p.boundaries:
            if p.nodes[b["attached"]]["lane"] == lid:
                out.append(f"        <bpmn:flowNodeRef>{b['id']}</bpmn:flowNodeRef>")
        out.append("      </bpmn:lane>")
    out.append("    </bpmn:laneSet>")
    inc = {}
    outg = {}
    for f in p.flows:
        outg.setdefault(f["src"], []).append(f["id"])
        inc.setdefault(f["dst"], []).append(f["id"])
    for n in p.nodes.values():
        attrs = f'id="{n["id"]}" name={quoteattr(n["name"])}'
        if n.get("default"):
            attrs += f' default="{n["default"]}"'
        if n["typ"] == "callActivity":
            attrs += f' calledElement="{n["called"]}"'
        out.append(f"    <bpmn:{n['typ']} {attrs}>")
        if n.get("doc"):
            out.append(f"      <bpmn:documentation>{escape(n['doc'])}</bpmn:documentation>")
        ext = ""
        if n["typ"] == "businessRuleTask":
            ext = ("      <bpmn:extensionElements>\n"
                   f"        <spiffworkflow:calledDecisionId>{n['decision']}</spiffworkflow:calledDecisionId>\n"
                   "      </bpmn:extensionElements>\n")
        else:
            ext = props_xml(n.get("props"), 6)
        if ext:
            out.append(ext.rstrip("\n"))
        for fid in inc.get(n["id"], []):
            out.append(f"      <bpmn:incoming>{fid}</bpmn:incoming>")
        for fid in outg.get(n["id"], []):
            out.append(f"      <bpmn:outgoing>{fid}</bpmn:outgoing>")
        if n["typ"] == "scriptTask":
            out.append(f"      <bpmn:script>{escape(n['script'])}</bpmn:script>")
        if n.get("mi"):
            coll, item, *output = n["mi"]
            out.append('      <bpmn:multiInstanceLoopCharacteristics>')
            out.append(f"        <bpmn:loopDataInputRef>{coll}</bpmn:loopDataInputRef>")
            if output:
                out.append(f"        <bpmn:loopDataOutputRef>{output[0]}</bpmn:loopDataOutputRef>")
            out.append(f'        <bpmn:inputDataItem id="{item}" name="{item}" />')  # the id is the variable
            if output:
                out.append(f'        <bpmn:outputDataItem id="{output[1]}" name="{output[1]}" />')
            out.append("      </bpmn:multiInstanceLoopCharacteristics>")
        if n.get("throw_escalation"):
            out.append(f'      <bpmn:escalationEventDefinition escalationRef="esc_{n["throw_escalation"]}" />')
            escalations.add(n["throw_escalation"])
        out.append(f"    </bpmn:{n['typ']}>")
    for b in p.boundaries:
        ci = "" if b["interrupting"] else ' cancelActivity="false"'
        out.append(f'    <bpmn:boundaryEvent id="{b["id"]}" name={quoteattr(b["name"])} '
                   f'attachedToRef="{b["attached"]}"{ci}>')
        for fid in outg.get(b["id"], []):
            out.append(f"      <bpmn:outgoing>{fid}</bpmn:outgoing>")
        if b["kind"] == "signal":
            out.append(f'      <bpmn:signalEventDefinition signalRef="sig_{b["event"]}" />')
            signals.add(b["event"])
        else:
            out.append(f'      <bpmn:escalationEventDefinition escalationRef="esc_{b["event"]}" />')
            escalations.add(b["event"])
        out.append("    </bpmn:boundaryEvent>")
    for f in p.flows:
        nm = f' name={quoteattr(f["name"])}' if f.get("name") else ""
        if f["cond"]:
            out.append(f'    <bpmn:sequenceFlow id="{f["id"]}"{nm} sourceRef="{f["src"]}" targetRef="{f["dst"]}">')
            out.append(f"      <bpmn:conditionExpression>{escape(f['cond'])}</bpmn:conditionExpression>")
            out.append("    </bpmn:sequenceFlow>")
        else:
            out.append(f'    <bpmn:sequenceFlow id="{f["id"]}"{nm} sourceRef="{f["src"]}" targetRef="{f["dst"]}" />')
    out.append("  </bpmn:process>")
    return out


def layout(p: Proc, y0):
    """Return (bounds per element id, lane bounds, pool bounds)."""
    lane_y, y = {}, y0
    for lid, _name, rows in p.lanes:
        h = rows * ROW_H + 2 * LANE_PAD
        lane_y[lid] = (y, h)
        y += h
    bounds = {}
    max_col = max(n["col"] for n in p.nodes.values())
    for n in p.nodes.values():
        w, h = SIZES[KIND[n["typ"]]]
        w = n.get("w", w)
        ly, _lh = lane_y[n["lane"]]
        cx = 100 + LANE_LABEL + 60 + n["col"] * COL_W
        cy = ly + LANE_PAD + n["row"] * ROW_H + ROW_H // 2
        bounds[n["id"]] = (int(cx - w // 2), int(cy - h // 2), w, h)
    for b in p.boundaries:
        tx, ty, tw, th = bounds[b["attached"]]
        bounds[b["id"]] = (tx + 1 + b["slot"] * 37, ty + th - 18, 36, 36)
    width = LANE_LABEL + 120 + (max_col + 1) * COL_W
    lanes = {lid: (100 + LANE_LABEL, ly, width - LANE_LABEL, lh) for lid, (ly, lh) in lane_y.items()}
    pool = (100, y0, width, y - y0)
    return bounds, lanes, pool


TRACKS = set()


def waypoints(src, dst, via=None):
    sx, sy, sw, sh = src
    dx, dy, dw, dh = dst
    s_cx, s_cy, d_cx, d_cy = sx + sw // 2, sy + sh // 2, dx + dw // 2, dy + dh // 2
    if via == "top":
        top = min(sy, dy) - 20
        return [(s_cx, sy), (s_cx, top), (d_cx, top), (d_cx, dy)]
    if abs(s_cx - d_cx) < 2 and (dy >= sy + sh or dy + dh <= sy):  # straight up/down
        return [(s_cx, sy + sh), (s_cx, dy)] if dy >= sy + sh else [(s_cx, sy), (s_cx, dy + dh)]
    if sw == sh == 50 and dx >= sx + sw and abs(s_cy - d_cy) >= 2:  # gateway fan-out
        return [(s_cx, sy + sh if d_cy > s_cy else sy), (s_cx, d_cy), (dx, d_cy)]
    if sh == 36 and sw == 36 and sy > 0 and abs(d_cy - s_cy) > 5:  # boundary/events: leave downwards
        start = (s_cx, sy + sh)
        if dx > sx + sw:
            return [start, (s_cx, d_cy), (dx, d_cy)]
        track = dy + dh + 20 if dy + dh < sy else s_cy + 40
        while track in TRACKS:
            track += 12
        TRACKS.add(track)
        return [start, (s_cx, track), (d_cx, track), (d_cx, dy + dh if track > dy + dh else dy)]
    if dx >= sx + sw:  # forwards
        if abs(s_cy - d_cy) < 2:
            return [(sx + sw, s_cy), (dx, d_cy)]
        mid = dx - 25
        return [(sx + sw, s_cy), (mid, s_cy), (mid, d_cy), (dx, d_cy)]
    # backwards: go over the top of the source and come down into the target
    top = min(sy, dy) - 15
    while top in TRACKS:
        top -= 12
    TRACKS.add(top)
    return [(s_cx, sy), (s_cx, top), (d_cx, top), (d_cx, dy)]


def di(p: Proc, collab_part, y0):
    bounds, lanes, pool = layout(p, y0)
    out = []
    x, y, w, h = pool
    out.append(f'      <bpmndi:BPMNShape id="{collab_part}_di" bpmnElement="{collab_part}" isHorizontal="true">')
    out.append(f'        <dc:Bounds x="{x}" y="{y}" width="{w}" height="{h}" />')
    out.append("      </bpmndi:BPMNShape>")
    for lid, (lx, ly, lw, lh) in lanes.items():
        out.append(f'      <bpmndi:BPMNShape id="lane_{p.pid}_{lid}_di" bpmnElement="lane_{p.pid}_{lid}" isHorizontal="true">')
        out.append(f'        <dc:Bounds x="{lx}" y="{ly}" width="{lw}" height="{lh}" />')
        out.append("      </bpmndi:BPMNShape>")
    for eid, (bx, by, bw, bh) in bounds.items():
        extra = ' isExpanded="false"' if p.nodes.get(eid, {}).get("typ") == "callActivity" else ""
        marker = ' isMarkerVisible="true"' if p.nodes.get(eid, {}).get("typ") == "exclusiveGateway" else ""
        out.append(f'      <bpmndi:BPMNShape id="{eid}_di" bpmnElement="{eid}"{extra}{marker}>')
        out.append(f'        <dc:Bounds x="{bx}" y="{by}" width="{bw}" height="{bh}" />')
        out.append("      </bpmndi:BPMNShape>")
    for f in p.flows:
        out.append(f'      <bpmndi:BPMNEdge id="{f["id"]}_di" bpmnElement="{f["id"]}">')
        for wx, wy in waypoints(bounds[f["src"]], bounds[f["dst"]], f.get("via")):
            out.append(f'        <di:waypoint x="{wx}" y="{wy}" />')
        out.append("      </bpmndi:BPMNEdge>")
    return out, pool


def warn_breach(p, task, slot0=0, overdue_to=None, breach_to=None, breach_interrupting=False):
    """The SLA hooks every timed task carries (domain.md §3)."""
    col, lane = p.nodes[task]["col"], p.nodes[task]["lane"]
    p.boundary(f"{task}_sla_warning", task, "sla_warning", "预警", False, slot0)
    p.node(f"{task}_warned", "endEvent", "预警已记录 warning noted", lane, col + 0.45, 1, props={})
    p.flow(f"{task}_sla_warning", f"{task}_warned")
    p.boundary(f"{task}_sla_breach", task, "sla_breach", "超时", breach_interrupting, slot0 + 1)
    if breach_to:
        p.flow(f"{task}_sla_breach", breach_to, name="超时上呼 breached: up one level")
    else:
        p.node(f"{task}_urged", "endEvent", "催办已发出 reminder sent", lane, col + 0.45, 2)
        p.flow(f"{task}_sla_breach", f"{task}_urged")
    if overdue_to:
        p.boundary(f"{task}_sla_overdue", task, "sla_overdue", "督办", True, slot0 + 2)
        p.flow(f"{task}_sla_overdue", overdue_to, name="督办 supervise")


def main_process():
    lanes = [("community", "社区 Community", 2), ("street", "街镇指挥中心 Street command centre", 3),
             ("department", "区属部门 Departments", 2), ("district", "区指挥中心 District command centre", 3),
             ("verification", "核查回访 Verification and feedback", 3)]
    p = Proc("call_dispatch", "有呼必应 Call dispatch", lanes)
    P = lambda **kw: kw  # noqa: E731
    p.node("call_filed", "startEvent", "呼叫 Call filed", "community", 0)
    p.node("route_call", "businessRuleTask", "路由 Route call", "community", 1, decision="routing",
           doc="Routing table bpmn/routing.dmn: category x urgency -> handling level, lead and assisting departments, SLA class.")
    p.node("gw_first_level", "exclusiveGateway", "首办层级? first level", "community", 2)
    p.node("community_handle", "userTask", "社区先行处置 Community handles", "community", 3,
           props=P(owner="community", sla_stage="community_handle", status="reported",
                   actions="handle,call_street"))
    p.node("gw_community", "exclusiveGateway", "社区能解决? solved", "community", 4)
    p.node("mark_community_handled", "scriptTask", "社区办结 handled by community", "community", 5,
           script="handled_by = 'community'")
    p.node("street_triage", "userTask", "街镇研判 Street triage", "street", 5,
           props=P(owner="street", sla_stage="triage", status="triage",
                   actions="void,merge,handle,dispatch,escalate"))
    p.node("gw_triage", "exclusiveGateway", "研判结果 triage decision", "street", 6)
    p.node("call_voided", "endEvent", "作废 Voided", "street", 6.5, 1, props=P(status="voided"))
    p.node("call_merged", "endEvent", "合并 Merged", "street", 6.5, 2, props=P(status="merged"))
    p.node("street_handle", "userTask", "街镇自行处置 Street handles", "street", 7,
           props=P(owner="street", sla_stage="resolve", status="in_progress", actions="done"))
    p.node("mark_street_handled", "scriptTask", "街镇办结 handled by street", "street", 8,
           script="handled_by = 'street'")
    p.node("prepare_dispatch", "scriptTask", "派单 dispatch to departments", "department", 9,
           script="at_district = level == 'district'\n"
                  "handled_by = 'district' if at_district else 'departments'\n"
                  "command_unit = district if at_district else street\n"
                  "slot_results = []")
    p.node("department_dispatch", "callActivity", "部门办理 Departments handle (lead + assistants)", "department", 10,
           called="department_work", mi=("slots", "slot", "slot_results", "slot_result"))
    p.node("enter_district", "scriptTask", "上呼区级 escalate to district", "district", 7,
           script="level = 'district'\ncommand_unit = district\nrework = False")
    p.node("district_coordinate", "userTask", "区级统筹 District coordination", "district", 8,
           props=P(owner="district", sla_stage="district_coordinate", status="district",
                   actions="coordinate", context="problem_ticket,supervised_department"))
    p.node("verify", "userTask", "核查 Verify result", "verification", 11,
           props=P(owner="community", sla_stage="verify", status="verify", actions="pass,fail"))
    p.node("gw_verify", "exclusiveGateway", "核查通过? passed", "verification", 12)
    p.node("count_rework", "scriptTask", "返工 rework +1", "verification", 12, 2,
           script="rework_count = rework_count + 1\nrework = True")
    p.node("gw_rework_to", "exclusiveGateway", "返工给谁 back to", "verification", 13, 2)
    p.node("feedback", "userTask", "回访 Feedback call", "verification", 14,
           props=P(owner="street", sla_stage="feedback", status="feedback", actions="rate"))
    p.node("gw_feedback", "exclusiveGateway", "满意? satisfied", "verification", 15)
    p.node("call_closed", "endEvent", "办结销号 Closed", "verification", 16, props=P(status="closed"))
    p.node("count_reopen", "scriptTask", "重办 reopen +1", "street", 15,
           script="reopen_count = reopen_count + 1\nrework = False")
    p.node("gw_reopen", "exclusiveGateway", "第三次重办? third reopen", "street", 16)
    p.node("mark_problem_ticket", "scriptTask", "问题工单 problem ticket", "district", 16,
           script="problem_ticket = True")

    p.flow("call_filed", "route_call")
    p.flow("route_call", "gw_first_level")
    p.flow("gw_first_level", "community_handle", "handling_level == 'community' and not direct_to_street", "社区先办")
    p.flow("gw_first_level", "enter_district", "handling_level == 'district'", "区级统筹")
    p.flow("gw_first_level", "street_triage", name="街镇研判", default=True)
    p.flow("community_handle", "gw_community")
    p.flow("gw_community", "mark_community_handled", "outcome == 'handled'", "已处置")
    p.flow("gw_community", "street_triage", name="呼叫街镇 call the street", default=True)
    p.flow("mark_community_handled", "verify")
    p.flow("street_triage", "gw_triage")
    p.flow("gw_triage", "call_voided", "decision == 'void'", "作废")
    p.flow("gw_triage", "call_merged", "decision == 'merge'", "合并")
    p.flow("gw_triage", "street_handle", "decision == 'handle'", "自办")
    p.flow("gw_triage", "prepare_dispatch", "decision == 'dispatch'", "派单")
    p.flow("gw_triage", "enter_district", "decision == 'escalate'", "上呼")
    p.flow("street_handle", "mark_street_handled")
    p.flow("mark_street_handled", "verify")
    p.flow("prepare_dispatch", "department_dispatch")
    p.flow("department_dispatch", "verify")
    p.flow("enter_district", "district_coordinate")
    p.flow("district_coordinate", "prepare_dispatch", name="子工单 child per department")
    p.flow("verify", "gw_verify")
    p.flow("gw_verify", "feedback", "passed", "通过")
    p.flow("gw_verify", "count_rework", name="不通过 rework", default=True)
    p.flow("count_rework", "gw_rework_to")
    p.flow("gw_rework_to", "community_handle", "handled_by == 'community'", "社区")
    p.flow("gw_rework_to", "street_handle", "handled_by == 'street'", "街镇")
    p.flow("gw_rework_to", "prepare_dispatch", "handled_by in ('departments', 'district')", "部门")
    p.flow("feedback", "gw_feedback")
    p.flow("gw_feedback", "call_closed",
           "resolved and satisfaction in ('satisfied', 'basically_satisfied')", "满意 close")
    p.flow("gw_feedback", "count_reopen", name="不满意 reopen", default=True)
    p.flow("count_reopen", "gw_reopen")
    p.flow("gw_reopen", "mark_problem_ticket", "reopen_count >= 3", "第三次")
    p.flow("gw_reopen", "street_triage", name="重新研判 re-triage", default=True)
    p.flow("mark_problem_ticket", "enter_district")

    warn_breach(p, "community_handle", breach_to="street_triage", breach_interrupting=True)
    warn_breach(p, "street_triage", overdue_to="enter_district")
    warn_breach(p, "street_handle", overdue_to="enter_district")
    warn_breach(p, "district_coordinate")
    warn_breach(p, "verify")
    warn_breach(p, "feedback")
    p.boundary("department_dispatch_supervised", "department_dispatch", "supervise",
               "督办上呼 supervised: to district", True, 0, kind="escalation")
    p.flow("department_dispatch_supervised", "enter_district", name="督办 to district")
    return p


def department_process():
    lanes = [("department", "区属部门 Department", 4), ("command", "指挥中心 Command centre (street or district)", 3)]
    p = Proc("department_work", "部门办理 Department work", lanes)
    P = lambda **kw: kw  # noqa: E731
    p.node("work_dispatched", "startEvent", "派单到部门 dispatched", "department", 0)
    p.node("begin_work", "scriptTask", "开始办理 begin", "department", 1,
           script="slot_result = dict(slot)")
    p.node("gw_rework", "exclusiveGateway", "返工? rework", "department", 2)
    p.node("sign", "userTask", "签收 Sign for", "department", 3.1, w=150,
           props=P(owner="slot.department", sla_stage="sign", status="dispatched", actions="sign,dispute",
                   context="slot"))
    p.node("resolve", "userTask", "办理 Resolve", "department", 5.4, w=224,
           props=P(owner="slot.department", sla_stage="resolve", status="in_progress",
                   actions="done,hang,dispute,request_extension,contact", context="slot",
                   sla_pause="hang"))
    p.node("gw_resolve", "exclusiveGateway", "结果 outcome", "department", 7)
    p.node("on_hold", "userTask", "挂账 On hold (clock paused)", "department", 8, 1,
           props=P(owner="slot.department", sla_stage="", status="on_hold", actions="resume", context="slot"))
    p.node("work_done", "endEvent", "办结上报 reported done", "department", 9)
    p.node("gw_overdue", "exclusiveGateway", "已在区级? at district", "department", 6.4, 3)
    p.node("supervise_up", "endEvent", "督办上呼 escalate to district", "department", 7.2, 3,
           throw_escalation="supervise")
    p.node("rule_dispute", "userTask", "争议裁定 Rule on dispute", "command", 4,
           props=P(owner="command_unit", sla_stage="", status="", actions="confirm,reassign",
                   context="dispute,slot"))
    p.node("gw_ruling", "exclusiveGateway", "改派? reassign", "command", 5)
    p.node("gw_added_assists", "exclusiveGateway", "增加协办? add assistants", "command", 7.7)
    p.node("dispute_confirmed", "endEvent", "维持派单 dispatch confirmed", "command", 8.5, 1)
    p.node("assist_work", "userTask", "协办 Assist", "department", 9, 3,
           props=P(owner="assist_department", sla_stage="resolve", status="", actions="done",
                   context="slot"), mi=("added_assists", "assist_department"))
    p.node("assisted", "endEvent", "协办完成 assist done", "department", 10, 3)
    p.node("throw_reassign", "intermediateThrowEvent", "改派 reassign", "command", 5, 1,
           throw_escalation="reassign")
    p.node("reassigned", "endEvent", "已改派 reassigned", "command", 5, 2)
    p.node("rule_extension", "userTask", "延期审批 Rule on extension", "command", 9, 2,
           props=P(owner="command_unit", sla_stage="", status="", actions="approve,refuse",
                   context="extension,slot"))
    p.node("extension_ruled", "endEvent", "延期已裁定 extension ruled", "command", 10, 2)
    p.node("apply_reassign", "scriptTask", "改派部门 move to new department", "department", 4.4, 3,
           script="slot = dict(slot, department=new_department)\nslot_result = dict(slot)\n"
                  "reassign_count = reassign_count + 1")

    p.flow("work_dispatched", "begin_work")
    p.flow("begin_work", "gw_rework")
    p.flow("gw_rework", "resolve", "rework", "返工", via="top")
    p.flow("gw_rework", "sign", name="新派单", default=True)
    p.flow("sign", "resolve")
    p.flow("resolve", "gw_resolve")
    p.flow("gw_resolve", "on_hold", "action == 'hang'", "挂账")
    p.flow("gw_resolve", "work_done", name="办结", default=True)
    p.flow("on_hold", "resolve")
    p.flow("gw_overdue", "resolve", "level == 'district'", "区级督办")
    p.flow("gw_overdue", "supervise_up", name="街镇派单: 上呼区级", default=True)
    p.flow("rule_dispute", "gw_ruling")
    p.flow("gw_ruling", "throw_reassign", "ruling == 'reassign'", "改派")
    p.flow("gw_ruling", "gw_added_assists", name="维持", default=True)
    p.flow("gw_added_assists", "assist_work", "added_assists", "增加协办")
    p.flow("gw_added_assists", "dispute_confirmed", name="无", default=True)
    p.flow("assist_work", "assisted")
    p.flow("throw_reassign", "reassigned")
    p.flow("rule_extension", "extension_ruled")
    p.flow("apply_reassign", "sign")

    warn_breach(p, "sign")
    warn_breach(p, "resolve", overdue_to="gw_overdue")
    for task, slot in (("sign", 2), ("resolve", 3)):
        p.boundary(f"{task}_disputed", task, "dispute", "争议", False, slot)
        p.flow(f"{task}_disputed", "rule_dispute", name="争议")
        p.boundary(f"{task}_reassigned", task, "reassign", "改派", True, slot + 1,
                   kind="escalation")
        p.flow(f"{task}_reassigned", "apply_reassign")
    p.boundary("on_hold_reassigned", "on_hold", "reassign", "被改派 reassigned", True, 0, kind="escalation")
    p.flow("on_hold_reassigned", "apply_reassign")
    p.boundary("resolve_extension", "resolve", "extension_request", "延期", False, 5)
    p.flow("resolve_extension", "rule_extension", name="延期申请")
    return p


def main():
    procs = [main_process(), department_process()]
    signals, escalations = set(), set()
    body = []
    for p in procs:
        body += semantic(p, signals, escalations)
    head = ['<?xml version="1.0" encoding="UTF-8"?>',
            '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
            'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
            'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
            'xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
            'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
            'id="huying_call_dispatch" targetNamespace="https://huying.example.org/bpmn" '
            'exporter="huying" exporterVersion="1">',
            '  <bpmn:collaboration id="huying_collaboration">']
    for p in procs:
        head.append(f'    <bpmn:participant id="pool_{p.pid}" name={quoteattr(p.name)} processRef="{p.pid}" />')
    head.append("  </bpmn:collaboration>")
    for s in sorted(signals):
        head.append(f'  <bpmn:signal id="sig_{s}" name="{s}">')
        head.append(event_ext(None, SIGNAL_VARS[s]))
        head.append("  </bpmn:signal>")
    for e in sorted(escalations):
        head.append(f'  <bpmn:escalation id="esc_{e}" name="{e}" escalationCode="{e}">')
        head.append(event_ext(*ESCALATION_PAYLOADS[e]))
        head.append("  </bpmn:escalation>")
    diag = ['  <bpmndi:BPMNDiagram id="diagram">',
            '    <bpmndi:BPMNPlane id="plane" bpmnElement="huying_collaboration">']
    y = 80
    for p in procs:
        shapes, pool = di(p, f"pool_{p.pid}", y)
        diag += shapes
        y = pool[1] + pool[3] + 80
    diag += ["    </bpmndi:BPMNPlane>", "  </bpmndi:BPMNDiagram>", "</bpmn:definitions>"]
    sys.stdout.write("\n".join(head + body + diag) + "\n")


if __name__ == "__main__":
    main()
