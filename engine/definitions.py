"""Deploying process definitions: validate safely, parse once, store versions, cache specs.

A definition version is a bundle of files (one or more ``.bpmn`` plus the
``.dmn`` decision tables they call).  Deploying the same bundle twice is a
no-op; a changed bundle becomes the next version.  Running instances stay on
the version they started with.
"""
from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .audit import record_audit
from .errors import InvalidDefinition, NotFound, msg
from .models import ProcessDefinition
from .spiff import SCRIPT_ENGINE, ParsedProcess, dump_specs, load_specs, new_parser, scoped_events

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
MAX_FILE_BYTES = 2 * 1024 * 1024

# A hardened lxml parser for the second pass (the first pass is defusedxml).
_LXML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                        remove_comments=False)


def _safe_tree(name: str, data: bytes):
    if len(data) > MAX_FILE_BYTES:
        raise InvalidDefinition(msg("%(file)s: file is larger than %(kib)s KiB", file=name, kib=MAX_FILE_BYTES // 1024))
    try:
        safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidDefinition(msg("%(file)s: refused unsafe XML (%(error)s: DTDs and entities are not allowed in "
                                    "process files)", file=name, error=type(exc).__name__)) from None
    except safe_et.ParseError as exc:
        raise InvalidDefinition(msg("%(file)s: not well-formed XML (%(error)s)", file=name, error=str(exc))) from None
    try:
        return etree.fromstring(data, _LXML)
    except etree.XMLSyntaxError as exc:
        raise InvalidDefinition(msg("%(file)s: not well-formed XML (%(error)s)", file=name, error=str(exc))) from None


def _element_label(root, element_id: str | None) -> str:
    if not element_id:
        return ""
    found = root.xpath("//*[@id=$i]", i=element_id) if root is not None else []
    return _label(found[0]) if found else f"element '{element_id}'"


def _check_semantics(name: str, root) -> None:
    """Rules of our own on top of the BPMN schema: what the engine needs to run it with people."""
    ns = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
    in_lanes = set(t.strip() for t in root.xpath("//bpmn:lane/bpmn:flowNodeRef/text()", namespaces=ns))
    for task in root.xpath("//bpmn:userTask", namespaces=ns):
        if task.get("id") not in in_lanes:
            raise InvalidDefinition(msg("%(file)s: userTask '%(id)s' (%(name)s) is in no lane: the lane says which "
                                        "role works it, and without one it would be in nobody's queue", file=name,
                                        id=task.get("id"), name=task.get("name")))
        owner = task.xpath("./bpmn:extensionElements/spiffworkflow:properties/"
                           "spiffworkflow:property[@name='owner']/@value", namespaces=ns)
        if not owner or not owner[0].strip():
            raise InvalidDefinition(msg("%(file)s: userTask '%(id)s' (%(name)s) has no 'owner' property: every "
                                        "human task must say which org unit owns it", file=name, id=task.get("id"),
                                        name=task.get("name")))
    for gateway in root.xpath("//bpmn:exclusiveGateway | //bpmn:inclusiveGateway", namespaces=ns):
        outgoing = root.xpath("//bpmn:sequenceFlow[@sourceRef=$g]", g=gateway.get("id"), namespaces=ns)
        if len(outgoing) > 1:
            default = gateway.get("default")
            for flow in outgoing:
                has_cond = flow.xpath("./bpmn:conditionExpression", namespaces=ns)
                if not has_cond and flow.get("id") != default:
                    raise InvalidDefinition(msg(
                        "%(file)s: sequenceFlow '%(flow)s' leaves gateway '%(gateway)s' without a condition and is "
                        "not its default flow", file=name, flow=flow.get("id"), gateway=gateway.get("id")))
            for flow in outgoing:
                for cond in flow.xpath("./bpmn:conditionExpression", namespaces=ns):
                    try:
                        compile(cond.text or "", flow.get("id"), "eval")
                    except SyntaxError as exc:
                        raise InvalidDefinition(msg("%(file)s: condition on sequenceFlow '%(flow)s' is not a valid "
                                                    "expression: %(error)s", file=name, flow=flow.get("id"),
                                                    error=exc.msg)) from None
    for script in root.xpath("//bpmn:scriptTask", namespaces=ns):
        text = "".join(script.xpath("./bpmn:script/text()", namespaces=ns))
        try:
            compile(text, script.get("id"), "exec")
        except SyntaxError as exc:
            raise InvalidDefinition(msg("%(file)s: scriptTask '%(id)s' has invalid Python: %(error)s (line %(line)s)",
                                        file=name, id=script.get("id"), error=exc.msg, line=exc.lineno)) from None


# What a sequence flow may connect, a boundary event sit on and a lane hold (BPMN 2.0 flow nodes).
_ACTIVITIES = frozenset({"task", "userTask", "manualTask", "serviceTask", "scriptTask", "businessRuleTask", "sendTask",
                         "receiveTask", "subProcess", "callActivity", "transaction", "adHocSubProcess"})
_FLOW_NODES = _ACTIVITIES | {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent",
                             "boundaryEvent", "exclusiveGateway", "inclusiveGateway", "parallelGateway",
                             "eventBasedGateway", "complexGateway"}
# event definition -> the attribute naming its root element, and that element (looked up in the same file)
_EVENT_REFS = {"signalEventDefinition": ("signalRef", "signal"), "messageEventDefinition": ("messageRef", "message"),
               "errorEventDefinition": ("errorRef", "error"),
               "escalationEventDefinition": ("escalationRef", "escalation")}


def _local(el) -> str:
    return etree.QName(el).localname


def _is_bpmn(el, kinds) -> bool:
    return isinstance(el.tag, str) and etree.QName(el).namespace == BPMN_NS and _local(el) in kinds


def _label(el) -> str:
    nm = el.get("name")
    return f"{_local(el)} '{el.get('id')}'" + (f" ({nm})" if nm else "")


def _scope(el) -> str:
    """The process or sub-process an element belongs to, e.g. "process 'call_dispatch'"."""
    node = el.getparent()
    while node is not None and not _is_bpmn(node, {"process", "subProcess", "transaction", "adHocSubProcess"}):
        node = node.getparent()
    return f"{_local(node)} '{node.get('id')}'" if node is not None else "the file"


def _elsewhere(by_id: dict, ref: str | None):
    found = by_id.get(ref)
    if found is None:
        return msg("no element of the file has that id")
    return msg("that is %(element)s in %(scope)s", element=_label(found), scope=_scope(found))


def _check_references(name: str, root) -> None:
    """Ids one element gives for another that SpiffWorkflow drops silently or reports misleadingly.

    Sequence flows, boundary events, default flows, lanes and event definitions
    must name an element that exists where BPMN puts it; otherwise the parser
    drops a boundary event (and with it the task's SLA hooks), a lane entry (the
    task's queue) or a default flow, or names the wrong element in its error.
    """
    ns = {"bpmn": BPMN_NS}
    by_id = {el.get("id"): el for el in root.iter() if isinstance(el.tag, str) and el.get("id")}

    def refuse(el, problem):
        raise InvalidDefinition(msg("%(file)s line %(line)s: %(element)s: %(problem)s", file=name,
                                    line=el.sourceline, element=_label(el), problem=problem))

    for flow in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
        for attr in ("sourceRef", "targetRef"):
            ref = flow.get(attr)
            node = by_id.get(ref)
            if node is None or node.getparent() is not flow.getparent() or not _is_bpmn(node, _FLOW_NODES):
                refuse(flow, msg("%(attr)s '%(ref)s' names no flow node of %(scope)s (%(found)s)",
                                 attr=attr, ref=ref, scope=_scope(flow), found=_elsewhere(by_id, ref)))
    for event in root.iter(f"{{{BPMN_NS}}}boundaryEvent"):
        ref = event.get("attachedToRef")
        node = by_id.get(ref)
        if node is None or node.getparent() is not event.getparent() or not _is_bpmn(node, _ACTIVITIES):
            refuse(event, msg("attachedToRef '%(ref)s' names no activity of %(scope)s (%(found)s): the event would "
                              "be dropped", ref=ref, scope=_scope(event), found=_elsewhere(by_id, ref)))
    for el in root.xpath("//bpmn:*[@default]", namespaces=ns):
        ref = el.get("default")
        flow = by_id.get(ref)
        if flow is None or not _is_bpmn(flow, {"sequenceFlow"}) or flow.get("sourceRef") != el.get("id"):
            refuse(el, msg("default flow '%(ref)s' is not a sequence flow leaving it (%(found)s)", ref=ref,
                           found=_elsewhere(by_id, ref)))
    for lane in root.iter(f"{{{BPMN_NS}}}lane"):
        container = lane.getparent()
        while container is not None and _local(container) in ("laneSet", "lane", "childLaneSet"):
            container = container.getparent()
        for ref_el in lane.xpath("./bpmn:flowNodeRef", namespaces=ns):
            ref = ref_el.text
            node = by_id.get(ref)
            if ref is not None and (node is None or not _is_bpmn(node, _FLOW_NODES)
                                    or container not in node.iterancestors()):
                refuse(lane, msg("flowNodeRef '%(ref)s' (line %(ref_line)s) names no flow node of %(scope)s "
                                 "(%(found)s)", ref=ref, ref_line=ref_el.sourceline, scope=_scope(lane),
                                 found=_elsewhere(by_id, ref)))
    for kind, (attr, target) in _EVENT_REFS.items():
        for definition in root.iter(f"{{{BPMN_NS}}}{kind}"):
            ref = definition.get(attr)
            if ref is None:
                continue  # the event's own name is used
            if not root.xpath(f"/bpmn:definitions/bpmn:{target}[@id=$r]", r=ref, namespaces=ns):
                known = sorted(root.xpath(f"/bpmn:definitions/bpmn:{target}/@id", namespaces=ns))
                refuse(definition.getparent(), msg("%(attr)s '%(ref)s' names no %(target)s of this file "
                                                   "(defined: %(known)s)", attr=attr, ref=ref, target=target,
                                                   known=", ".join(known) or "-"))


def _called_decisions(bpmn_roots: Mapping[str, object], decisions: Mapping[str, str]) -> None:
    """Every businessRuleTask calls a decision one of the bundle's DMN files defines."""
    ns = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
    for name, root in bpmn_roots.items():
        for task in root.iter(f"{{{BPMN_NS}}}businessRuleTask"):
            refs = task.xpath("./bpmn:extensionElements/spiffworkflow:calledDecisionId", namespaces=ns)
            ref = refs[-1].text if refs else None
            if ref not in decisions:
                known = ", ".join(f"'{d}' ({f})" for d, f in sorted(decisions.items())) or "-"
                raise InvalidDefinition(msg(
                    "%(file)s line %(line)s: %(element)s calls decision '%(decision)s', but no DMN file deployed "
                    "with it defines that decision (decisions given: %(known)s)", file=name, line=task.sourceline,
                    element=_label(task), decision=ref or "", known=known))


def _decision_id(name: str, root, decisions: Mapping[str, str]) -> str:
    """The one decision a DMN file defines, not defined by another file of the bundle too (the last would win)."""
    tag = etree.QName(root)
    if tag.localname != "definitions" or not tag.namespace:
        raise InvalidDefinition(msg("%(file)s: not a DMN file (its root element is <%(tag)s>, not a DMN "
                                    "<definitions>)", file=name, tag=tag.localname))
    found = root.xpath("dmn:decision/@id", namespaces={"dmn": tag.namespace})
    if len(found) != 1:
        raise InvalidDefinition(msg("%(file)s: %(count)s decisions in this file: a DMN file holds one decision table",
                                    file=name, count=len(found)))
    if found[0] in decisions:
        raise InvalidDefinition(msg("%(file)s: decision '%(decision)s' is also defined by %(other)s: deploy one table "
                                    "per decision", file=name, decision=found[0], other=decisions[found[0]]))
    return found[0]


def _never_matches(test: str) -> str | None:
    """FEEL's list and negation tests, which SpiffWorkflow's Python DMN compares as a value (a tuple, False): they
    compile and silently never match.  Returns how to write the test instead, or None."""
    if "?" in test:
        return None
    try:
        body = ast.parse(test.strip(), mode="eval").body
    except SyntaxError:
        return None  # the compile check reports it
    if isinstance(body, ast.Tuple):
        return f"a list is compared as one value; write ? in ({test.strip()}) for any of them"
    if isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not):
        return f"not(…) is compared as the value False; write ? != {ast.unparse(body.operand)} (or ? not in (…))"
    return None


class _CompilingScriptEngine:
    """What SpiffWorkflow's DMN engine asks of the script engine, compiling each expression instead of running it.

    :meth:`DMNEngine.evaluate` turns a rule's input entry into the expression the
    engine runs (``(category) == ("gas_leak")``, ``urgency< 5``, ``4 < ? < 6``); going
    through it with this engine checks that expression exactly as the running
    engine will compile it (:data:`SCRIPT_ENGINE`'s syntax check, then ``eval``).
    """

    def validate(self, expression):
        SCRIPT_ENGINE.validate(expression)

    def evaluate(self, task, expression, external_context=None):
        compile(expression, "<dmn>", "eval")
        return True


_COMPILING_TASK = SimpleNamespace(workflow=SimpleNamespace(script_engine=_CompilingScriptEngine()))


def _check_decision(name: str, root, dmn_parser) -> None:
    """Rule by rule, the input entries of a decision table compile as the DMN engine will run them.

    SpiffWorkflow checks the output entries when it parses a table, the input
    entries only when a call meets them: a broken test would fail every call.
    """
    dmn = {"dmn": etree.QName(root).namespace}
    for table in root.xpath("dmn:decision/dmn:decisionTable", namespaces=dmn):
        columns = len(table.xpath("dmn:input", namespaces=dmn))
        for number, rule in enumerate(table.xpath("dmn:rule", namespaces=dmn), 1):
            entries = len(rule.xpath("dmn:inputEntry", namespaces=dmn))
            if entries != columns:
                raise InvalidDefinition(msg(
                    "%(file)s line %(line)s: decision table '%(table)s', rule %(number)s '%(rule)s' has %(entries)s "
                    "input entries for %(columns)s input columns", file=name, line=rule.sourceline,
                    table=table.get("id"), number=number, rule=rule.get("id"), entries=entries, columns=columns))
    try:
        dmn_parser.parse()  # a ValidationException (e.g. a malformed output entry) is described by the caller
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
        raise InvalidDefinition(msg("%(file)s: decision '%(decision)s' cannot be read: %(error)s", file=name,
                                    decision=dmn_parser.bpmn_id, error=repr(exc))) from None
    decision = dmn_parser.decision

    def refuse(table, element_id: str, where, what, exc: Exception):
        found = root.xpath("//*[@id=$i]", i=element_id)
        raise InvalidDefinition(msg(
            "%(file)s line %(line)s: decision table '%(table)s' of decision '%(decision)s', %(where)s: %(what)s: "
            "%(error)s", file=name, line=found[0].sourceline if found else "?", table=table.id,
            decision=f"{decision.id}{f' ({decision.name})' if decision.name else ''}", where=where, what=what,
            error=getattr(exc, "msg", None) or str(exc))) from None

    for table in decision.decisionTables:
        engine = DMNEngine(table)
        used = set()  # the columns a rule tests (the engine reads a column's expression only then)
        for rule in table.rules:
            for entry in rule.inputEntries:
                column = entry.input
                label = msg("input column '%(column)s' (%(id)s)", column=column.label or column.name, id=column.id)
                where = msg("rule %(number)s '%(rule)s', %(column)s", number=rule.row_number, rule=rule.id,
                            column=label)
                # without an expression the engine takes the value from the task data: test against a constant
                expression = column.expression or "None"
                for test in entry.lhs:
                    if test is None:
                        continue
                    if column.id not in used:
                        used.add(column.id)
                        try:
                            compile(expression, "<dmn>", "eval")
                        except (SyntaxError, ValueError) as exc:
                            refuse(table, column.id, label, msg("its input expression %(expression)s is not a valid "
                                                                "expression", expression=repr(expression)), exc)
                    trap = _never_matches(test)
                    if trap is not None:
                        refuse(table, entry.id, where, msg("input entry %(test)s never matches", test=repr(test)),
                               ValueError(trap))
                    try:
                        engine.evaluate(expression, test, _COMPILING_TASK)
                    except (SyntaxError, ValueError) as exc:
                        refuse(table, entry.id, where,
                               msg("input entry %(test)s is not a valid test of %(expression)s", test=repr(test),
                                   expression=repr(expression)), exc)


def _root_processes(bpmn_roots: Mapping[str, object]) -> list[str]:
    ns = {"bpmn": BPMN_NS}
    executable, called = [], set()
    for root in bpmn_roots.values():
        for proc in root.xpath("//bpmn:process[@isExecutable='true']", namespaces=ns):
            executable.append(proc.get("id"))
        called.update(root.xpath("//bpmn:callActivity/@calledElement", namespaces=ns))
    return [p for p in executable if p not in called]


def parse_bundle(files: Mapping[str, bytes | str], *, our_rules: bool = True) -> dict[str, ParsedProcess]:
    """Validate and parse a bundle of BPMN/DMN files; returns the parsed root processes by id.

    Raises :class:`InvalidDefinition` naming the file and the element at fault.
    Nothing is stored: this is what ``huying bpmn validate`` runs.  ``our_rules=False``
    re-parses a version already deployed: its files passed the rules of their day, and
    calls running on it must not stop because a rule was added since.
    """
    if not files:
        raise InvalidDefinition(msg("no files given"))
    parser = new_parser(validate=True)
    roots = {}
    bpmn_roots = {}
    decisions = {}  # decision id -> the DMN file defining it
    for name, data in files.items():
        raw = data.encode("utf-8") if isinstance(data, str) else data
        root = _safe_tree(name, raw)
        roots[name] = root
        try:
            if name.endswith(".dmn"):
                decision_id = _decision_id(name, root, decisions) if our_rules else None
                parser.add_dmn_xml(root, filename=name)
                if our_rules:
                    _check_decision(name, root, parser.dmn_parsers[decision_id])
                    decisions[decision_id] = name
            elif name.endswith(".bpmn"):
                parser.add_bpmn_xml(root, filename=name)  # the schema first: the checks below read valid BPMN
                if our_rules:
                    _check_references(name, root)
                    _check_semantics(name, root)
                bpmn_roots[name] = root
            else:
                raise InvalidDefinition(msg("%(file)s: only .bpmn and .dmn files can be deployed", file=name))
        except ValidationException as exc:
            raise InvalidDefinition(_describe(exc, roots.get(exc.file_name or name))) from None
    if our_rules:
        _called_decisions(bpmn_roots, decisions)
    process_ids = _root_processes(bpmn_roots)
    if not process_ids:
        raise InvalidDefinition(msg("no executable process found (isExecutable='true') in %(files)s",
                                    files=", ".join(n for n in files if n.endswith(".bpmn"))))
    parsed = {}
    for pid in process_ids:
        try:
            spec = parser.get_spec(pid)
            subprocess_specs = parser.get_subprocess_specs(pid)
        except ValidationException as exc:
            raise InvalidDefinition(_describe(exc, roots.get(exc.file_name), f"process '{pid}'")) from None
        except (SpiffWorkflowException, KeyError, AttributeError, TypeError) as exc:
            raise InvalidDefinition(msg("process '%(process)s' cannot be built: %(error)s", process=pid,
                                        error=str(exc))) from None
        scoped_events([spec, *subprocess_specs.values()])
        parsed[pid] = ParsedProcess(pid, spec, subprocess_specs)
    return parsed


def _describe(exc: ValidationException, root, context: str = "") -> str:
    where = exc.file_name or context
    label = _element_label(root, getattr(exc, "id", None))
    line = f" line {exc.line_number}" if getattr(exc, "line_number", None) else ""
    text = str(exc).split("\n")[0]
    return f"{where}{line}: {label + ': ' if label else ''}{text}"


def read_files(paths: list[str]) -> dict[str, bytes]:
    files = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InvalidDefinition(msg("%(file)s: no such file", file=p))
        files[path.name] = path.read_bytes()
    return files


def bundle_hash(files: Mapping[str, bytes | str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0" + (data.encode() if isinstance(data, str) else data) + b"\0")
    return h.hexdigest()


@dataclass
class DeployResult:
    process_id: str
    version: int
    definition_id: int
    created: bool


def deploy(session: Session, files: Mapping[str, bytes | str], *, at: datetime, actor: str,
           note: str = "") -> list[DeployResult]:
    """Validate, parse and store a new version of every root process in ``files``.

    An identical bundle already deployed as the latest version is not stored again.
    Each new version is audited (``definition.deployed``: who, the previous version, the new one with its
    hash and files), in the caller's transaction. Raises :class:`InvalidDefinition`; on error nothing is written.
    """
    parsed = parse_bundle(files)
    digest = bundle_hash(files)
    texts = {n: (d.decode("utf-8") if isinstance(d, bytes) else d) for n, d in files.items()}
    results = []
    for pid, proc in parsed.items():
        latest = latest_definition(session, pid)
        if latest is not None and latest.sha256 == digest:
            results.append(DeployResult(pid, latest.version, latest.id, False))
            continue
        version = (session.scalar(select(func.max(ProcessDefinition.version))
                                  .where(ProcessDefinition.process_id == pid)) or 0) + 1
        row = ProcessDefinition(process_id=pid, version=version, sha256=digest, files=texts,
                                spec_json=dump_specs(proc), deployed_at=at, deployed_by=actor, note=note)
        session.add(row)
        session.flush()
        SPEC_CACHE.put(row.id, digest, proc)
        record_audit(session, at=at, actor=actor, action="definition.deployed", subject=pid,
                     old={"version": latest.version} if latest is not None else None,
                     new={"version": version, "sha256": digest, "files": sorted(texts)}, detail={"note": note})
        results.append(DeployResult(pid, version, row.id, True))
    return results


def latest_definition(session: Session, process_id: str) -> ProcessDefinition | None:
    return session.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                          .order_by(ProcessDefinition.version.desc()).limit(1))


def list_definitions(session: Session, process_id: str | None = None) -> list[ProcessDefinition]:
    q = select(ProcessDefinition).order_by(ProcessDefinition.process_id, ProcessDefinition.version)
    if process_id:
        q = q.where(ProcessDefinition.process_id == process_id)
    return list(session.scalars(q))


class SpecCache:
    """Parsed specs per definition (id and content hash), shared by every request in the process.

    Keyed by the hash too: a deploy whose transaction rolled back may leave its
    parsed spec here under an id the database later gives to another version.
    """

    def __init__(self):
        self._specs: dict[tuple[int, str], ParsedProcess] = {}
        self._lock = threading.Lock()

    def put(self, definition_id: int, sha256: str, parsed: ParsedProcess) -> None:
        with self._lock:
            self._specs[(definition_id, sha256)] = parsed

    def get(self, definition: ProcessDefinition) -> ParsedProcess:
        parsed = self._specs.get((definition.id, definition.sha256))
        if parsed is None:
            try:
                parsed = load_specs(definition.process_id, definition.spec_json)
            except Exception:  # noqa: BLE001 - e.g. a spec stored by an older SpiffWorkflow: re-parse the XML
                parsed = parse_bundle(definition.files, our_rules=False)[definition.process_id]
            self.put(definition.id, definition.sha256, parsed)
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()


SPEC_CACHE = SpecCache()


def get_definition(session: Session, process_id: str, version: int | None = None) -> ProcessDefinition:
    if version is None:
        row = latest_definition(session, process_id)
    else:
        row = session.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id,
                                                              ProcessDefinition.version == version))
    if row is None:
        raise NotFound(msg("process '%(process)s' version %(version)s is not deployed", process=process_id,
                           version=version) if version else
                       msg("process '%(process)s' is not deployed", process=process_id))
    return row
