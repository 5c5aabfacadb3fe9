"""Deploying process definitions: validate safely, parse once, store versions, cache specs.

A definition version is a bundle of files (one or more ``.bpmn`` plus the
``.dmn`` decision tables they call).  Deploying the same bundle twice is a
no-op; a changed bundle becomes the next version.  Running instances stay on
the version they started with.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import InvalidDefinition, NotFound, msg
from .models import ProcessDefinition
from .spiff import ParsedProcess, dump_specs, load_specs, new_parser, scoped_events

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
    if found:
        el = found[0]
        tag = etree.QName(el).localname
        nm = el.get("name")
        return f"{tag} '{element_id}'" + (f" ({nm})" if nm else "")
    return f"element '{element_id}'"


def _check_semantics(name: str, root) -> None:
    """Rules of our own on top of the BPMN schema: what the engine needs to run it with people."""
    ns = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
    for task in root.xpath("//bpmn:userTask", namespaces=ns):
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


def _root_processes(bpmn_roots: Mapping[str, object]) -> list[str]:
    ns = {"bpmn": BPMN_NS}
    executable, called = [], set()
    for root in bpmn_roots.values():
        for proc in root.xpath("//bpmn:process[@isExecutable='true']", namespaces=ns):
            executable.append(proc.get("id"))
        called.update(root.xpath("//bpmn:callActivity/@calledElement", namespaces=ns))
    return [p for p in executable if p not in called]


def parse_bundle(files: Mapping[str, bytes | str]) -> dict[str, ParsedProcess]:
    """Validate and parse a bundle of BPMN/DMN files; returns the parsed root processes by id.

    Raises :class:`InvalidDefinition` naming the file and the element at fault.
    Nothing is stored: this is what ``huying bpmn validate`` runs.
    """
    if not files:
        raise InvalidDefinition(msg("no files given"))
    parser = new_parser(validate=True)
    roots = {}
    bpmn_roots = {}
    for name, data in files.items():
        raw = data.encode("utf-8") if isinstance(data, str) else data
        root = _safe_tree(name, raw)
        roots[name] = root
        try:
            if name.endswith(".dmn"):
                parser.add_dmn_xml(root, filename=name)
            elif name.endswith(".bpmn"):
                _check_semantics(name, root)
                parser.add_bpmn_xml(root, filename=name)
                bpmn_roots[name] = root
            else:
                raise InvalidDefinition(msg("%(file)s: only .bpmn and .dmn files can be deployed", file=name))
        except ValidationException as exc:
            raise InvalidDefinition(_describe(exc, roots.get(exc.file_name or name))) from None
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
    Raises :class:`InvalidDefinition`; on error nothing is written.
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
                parsed = parse_bundle(definition.files)[definition.process_id]
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
