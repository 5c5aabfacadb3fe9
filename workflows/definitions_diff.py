"""Reading deployed process bundles as people compare them: elements, decision tables, version diffs.

Pure functions over the stored XML texts (a bundle is ``{file name: XML}``, as
``ProcessDefinition.files``): no database, no Flask.  A diff lists each BPMN
element (task, event, gateway, flow, lane, ...) and each DMN element (decision,
input, output, rule) that was added, removed or changed between two bundles,
with the attributes that changed: name, lane, extension properties
(``owner``, ``sla_stage``, ...), conditions, scripts, called decisions, and for
a routing rule its description and each input and output cell.  Diagram layout
(BPMNDI/DMNDI) is left out: moving a shape changes nothing that runs.

The XML is parsed with defusedxml (no DTDs, no entities), like deployment does.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element as XmlElement

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DMN_NAMESPACES = ("https://www.omg.org/spec/DMN/20191111/MODEL/", "http://www.omg.org/spec/DMN/20180521/MODEL/",
                  "https://www.omg.org/spec/DMN/20230324/MODEL/", "http://www.omg.org/spec/DMN/20151101/dmn.xsd")

# BPMN elements with an id that are details of their parent, not elements of their own in a diff
BPMN_FOLDED = {"definitions", "laneSet", "extensionElements", "conditionExpression", "ioSpecification",
               "multiInstanceLoopCharacteristics", "standardLoopCharacteristics", "documentation", "script",
               "timeDuration", "timeDate", "timeCycle", "loopCardinality", "completionCondition", "dataInput",
               "dataOutput", "inputSet", "outputSet"}
BPMN_SKIPPED = {"incoming", "outgoing", "flowNodeRef", "childLaneSet"}  # said once elsewhere (flows, lanes)
ADDED, REMOVED, CHANGED = "added", "removed", "changed"


class UnreadableXml(ValueError):
    """A stored file that is not (safe, well-formed) XML."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


def _text(el: XmlElement | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def parse_xml(name: str, text: str | bytes) -> XmlElement:
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, safe_et.ParseError) as exc:
        raise UnreadableXml(f"{name}: {exc}") from None


# ---- elements ---------------------------------------------------------------------------------------
@dataclass
class Element:
    """One element of a diagram or decision table and the attributes a diff compares."""

    id: str
    kind: str  # the XML element's local name: userTask, sequenceFlow, lane, decision, rule, ...
    name: str
    file: str
    parent: str = ""  # the process or decision it belongs to
    attrs: dict[str, str] = field(default_factory=dict)


def _canon(el: XmlElement) -> str:
    """A folded detail as one line: ``tag(attr=value, ...) text [children]``."""
    attrs = ", ".join(f"{_local(k)}={v}" for k, v in sorted(el.attrib.items()) if k != "id")
    inner = " ".join(x for x in [" ".join((el.text or "").split())] + [_canon(c) for c in el] if x)
    return _local(el.tag) + (f"({attrs})" if attrs else "") + (f" {inner}" if inner else "")


def _spiff_details(ext: XmlElement, attrs: dict[str, str]) -> None:
    for item in ext:
        tag = _local(item.tag)
        if tag == "properties":
            for prop in item:
                if prop.get("name"):
                    attrs[f"property:{prop.get('name')}"] = prop.get("value", "")
        elif _ns(item.tag) == SPIFF_NS and len(item) == 0:
            attrs[tag] = _text(item)
        else:
            attrs[tag] = _canon(item)


def _bpmn_attrs(el: XmlElement, lanes: Mapping[str, str]) -> dict[str, str]:
    attrs = {_local(k): v for k, v in el.attrib.items() if k != "id"}
    if el.get("id") in lanes:
        attrs["lane"] = lanes[el.get("id")]
    counts: dict[str, int] = {}
    for child in el:
        tag = _local(child.tag)
        if tag in BPMN_SKIPPED or _is_bpmn_element(child):
            continue
        if tag == "extensionElements":
            _spiff_details(child, attrs)
            continue
        key = {"conditionExpression": "condition"}.get(tag, tag)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:
            key = f"{key}#{counts[key]}"
        plain = tag in ("conditionExpression", "script", "documentation") or (len(child) == 0 and not child.attrib)
        attrs[key] = _text(child) if plain else _canon(child)
    return attrs


def _is_bpmn_element(el: XmlElement) -> bool:
    return _ns(el.tag) == BPMN_NS and bool(el.get("id")) and _local(el.tag) not in BPMN_FOLDED \
        and not _local(el.tag).endswith("EventDefinition")


def bpmn_elements(name: str, text: str | bytes) -> list[Element]:
    """The elements of a BPMN file in document order (diagram layout left out)."""
    root = parse_xml(name, text)
    lanes = {}
    for lane in root.iter(f"{{{BPMN_NS}}}lane"):
        for ref in lane.iter(f"{{{BPMN_NS}}}flowNodeRef"):
            lanes[(ref.text or "").strip()] = lane.get("name") or lane.get("id", "")
    out: list[Element] = []

    def walk(el: XmlElement, parent: str) -> None:
        for child in el:
            if _ns(child.tag) != BPMN_NS:
                continue
            if _is_bpmn_element(child):
                kind = _local(child.tag)
                out.append(Element(child.get("id"), kind, child.get("name", ""), name, parent,
                                   _bpmn_attrs(child, lanes)))
                walk(child, child.get("id") if kind in ("process", "subProcess", "collaboration") else parent)
            elif _local(child.tag) in ("laneSet", "childLaneSet", "lane"):
                walk(child, parent)

    walk(root, "")
    return out


def _dmn_child(el: XmlElement, tag: str) -> XmlElement | None:
    return next((c for c in el if _local(c.tag) == tag), None)


@dataclass
class DecisionTable:
    """A decision table as rows to read: the column headings and each rule's cells."""

    decision_id: str
    name: str
    hit_policy: str
    inputs: list[str]  # column headings (label, else the input expression)
    outputs: list[str]  # column headings (label, else the output name)
    rules: list[dict]  # {"id", "description", "inputs": [...], "outputs": [...]}
    file: str = ""


def decision_tables(name: str, text: str | bytes) -> list[DecisionTable]:
    """The decision tables of a DMN file."""
    root = parse_xml(name, text)
    tables = []
    for decision in (d for d in root.iter() if _local(d.tag) == "decision" and _ns(d.tag) in DMN_NAMESPACES):
        table = _dmn_child(decision, "decisionTable")
        if table is None:
            continue
        inputs = [c for c in table if _local(c.tag) == "input"]
        outputs = [c for c in table if _local(c.tag) == "output"]
        rules = []
        for rule in (c for c in table if _local(c.tag) == "rule"):
            rules.append({"id": rule.get("id", ""), "description": _text(_dmn_child(rule, "description")),
                          "inputs": [_text(_dmn_child(e, "text")) for e in rule if _local(e.tag) == "inputEntry"],
                          "outputs": [_text(_dmn_child(e, "text")) for e in rule
                                      if _local(e.tag) == "outputEntry"]})
        tables.append(DecisionTable(
            decision.get("id", ""), decision.get("name", ""), table.get("hitPolicy", "UNIQUE"),
            [i.get("label") or _text(_dmn_child(i, "inputExpression")) or i.get("id", "") for i in inputs],
            [o.get("label") or o.get("name") or o.get("id", "") for o in outputs], rules, name))
    return tables


def dmn_elements(name: str, text: str | bytes) -> list[Element]:
    """Decisions, their inputs, outputs and rules (a rule's cells keyed by the column they are in)."""
    root = parse_xml(name, text)
    out: list[Element] = []
    for el in root:
        if _ns(el.tag) not in DMN_NAMESPACES or not el.get("id"):
            continue
        kind = _local(el.tag)
        attrs = {_local(k): v for k, v in el.attrib.items() if k != "id"}
        table = _dmn_child(el, "decisionTable") if kind == "decision" else None
        if table is not None:
            attrs["hitPolicy"] = table.get("hitPolicy", "UNIQUE")
        for child in el:
            if _local(child.tag) not in ("decisionTable", "extensionElements"):
                attrs[_local(child.tag)] = _canon(child) if len(child) else _text(child)
        out.append(Element(el.get("id"), kind, el.get("name", ""), name, "", attrs))
        if table is None:
            continue
        columns_in, columns_out = [], []
        for col in table:
            tag = _local(col.tag)
            if tag == "input":
                heading = col.get("label") or _text(_dmn_child(col, "inputExpression")) or col.get("id", "")
                columns_in.append(heading)
                expression = _dmn_child(col, "inputExpression")
                out.append(Element(col.get("id", ""), "input", heading, name, el.get("id"), {
                    "label": col.get("label", ""), "expression": _text(expression),
                    "typeRef": expression.get("typeRef", "") if expression is not None else ""}))
            elif tag == "output":
                heading = col.get("label") or col.get("name") or col.get("id", "")
                columns_out.append(heading)
                out.append(Element(col.get("id", ""), "output", heading, name, el.get("id"), {
                    "label": col.get("label", ""), "name": col.get("name", ""), "typeRef": col.get("typeRef", "")}))
            elif tag == "rule":
                description = _text(_dmn_child(col, "description"))
                attrs = {"description": description}
                ins = [c for c in col if _local(c.tag) == "inputEntry"]
                outs = [c for c in col if _local(c.tag) == "outputEntry"]
                for i, entry in enumerate(ins):
                    attrs[f"when {columns_in[i] if i < len(columns_in) else i + 1}"] = _text(_dmn_child(entry, "text"))
                for i, entry in enumerate(outs):
                    attrs[f"then {columns_out[i] if i < len(columns_out) else i + 1}"] = \
                        _text(_dmn_child(entry, "text"))
                out.append(Element(col.get("id", ""), "rule", description, name, el.get("id"), attrs))
    return out


def bundle_elements(files: Mapping[str, str | bytes]) -> list[Element]:
    """Every element of a bundle, file by file (sorted by name), in document order."""
    out: list[Element] = []
    for name in sorted(files):
        if name.endswith(".bpmn"):
            out.extend(bpmn_elements(name, files[name]))
        elif name.endswith(".dmn"):
            out.extend(dmn_elements(name, files[name]))
    return out


@dataclass
class BundleContents:
    processes: list[tuple[str, str]]  # (id, name) of every process in the diagrams
    decisions: list[tuple[str, str]]  # (id, name) of every decision


def bundle_contents(files: Mapping[str, str | bytes]) -> BundleContents:
    """Which processes and decisions a bundle holds (a diagram may hold several processes)."""
    processes, decisions = [], []
    for name in sorted(files):
        try:
            root = parse_xml(name, files[name])
        except UnreadableXml:
            continue
        for el in root:
            if _local(el.tag) == "process" and _ns(el.tag) == BPMN_NS:
                processes.append((el.get("id", ""), el.get("name", "")))
            elif _local(el.tag) == "decision" and _ns(el.tag) in DMN_NAMESPACES:
                decisions.append((el.get("id", ""), el.get("name", "")))
    return BundleContents(processes, decisions)


# ---- diff -------------------------------------------------------------------------------------------
@dataclass
class AttrChange:
    attr: str
    old: str | None  # None: the attribute is new
    new: str | None  # None: the attribute was dropped


@dataclass
class ElementChange:
    status: str  # added | removed | changed
    element: Element  # the new one (the old one when removed)
    changes: list[AttrChange] = field(default_factory=list)


@dataclass
class BundleDiff:
    files_added: list[str]
    files_removed: list[str]
    files_changed: list[str]
    changes: list[ElementChange]

    def count(self, status: str) -> int:
        return sum(1 for c in self.changes if c.status == status)

    def diagram_marks(self, side: str) -> dict[str, str]:
        """BPMN element id -> status to mark on the ``old`` diagram (changed, removed) or the ``new`` one
        (added, changed)."""
        hidden = ADDED if side == "old" else REMOVED
        return {c.element.id: c.status for c in self.changes
                if c.status != hidden and c.element.file.endswith(".bpmn")}


def _keyed(elements: list[Element]) -> dict[tuple[str, str], Element]:
    """Elements by (bpmn|dmn, id); an id used twice in one kind of file is told apart by the file."""
    out: dict[tuple[str, str], Element] = {}
    for el in elements:
        key = (el.file.rsplit(".", 1)[-1], el.id)
        if key in out:
            key = (key[0], f"{el.file}:{el.id}")
        out[key] = el
    return out


def compare_elements(old: Element, new: Element) -> list[AttrChange]:
    changes = []
    if old.name != new.name and "name" not in old.attrs and "name" not in new.attrs \
            and "description" not in new.attrs:
        changes.append(AttrChange("name", old.name, new.name))
    if old.kind != new.kind:
        changes.append(AttrChange("type", old.kind, new.kind))
    for key in list(dict.fromkeys([*old.attrs, *new.attrs])):
        a, b = old.attrs.get(key), new.attrs.get(key)
        if a != b:
            changes.append(AttrChange(key, a, b))
    return changes


def diff_bundles(old: Mapping[str, str | bytes], new: Mapping[str, str | bytes]) -> BundleDiff:
    """What changed from bundle ``old`` to bundle ``new``; raises :class:`UnreadableXml`."""
    a, b = _keyed(bundle_elements(old)), _keyed(bundle_elements(new))
    changes = []
    for key, el in b.items():
        before = a.get(key)
        if before is None:
            changes.append(ElementChange(ADDED, el))
        else:
            diff = compare_elements(before, el)
            if diff:
                changes.append(ElementChange(CHANGED, el, diff))
    changes.extend(ElementChange(REMOVED, el) for key, el in a.items() if key not in b)
    rank = {CHANGED: 0, ADDED: 1, REMOVED: 2}
    changes.sort(key=lambda c: rank[c.status])  # stable: document order within each kind of change
    common = sorted(set(old) & set(new))
    return BundleDiff(sorted(set(new) - set(old)), sorted(set(old) - set(new)),
                      [n for n in common if _as_text(old[n]) != _as_text(new[n])], changes)


def _as_text(data: str | bytes) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


# ---- bundles ----------------------------------------------------------------------------------------
def _defines(name: str, data: str | bytes) -> set[str]:
    try:
        root = parse_xml(name, data)
    except UnreadableXml:
        return set()
    kinds = ("process",) if name.endswith(".bpmn") else ("decision",)
    return {el.get("id", "") for el in root if _local(el.tag) in kinds}


def complete_bundle(base: Mapping[str, str], uploads: Mapping[str, bytes]) -> dict[str, str | bytes]:
    """The uploaded files plus the files of ``base`` (a deployed version) that they do not replace.

    A base file is replaced by an upload of the same name, or by an uploaded file
    of its kind that defines one of the same processes (BPMN) or decisions (DMN),
    e.g. ``routing_v2.dmn`` replaces ``routing.dmn`` when both define ``routing``.
    """
    defined = {ext: set() for ext in (".bpmn", ".dmn")}
    for name, data in uploads.items():
        for ext in defined:
            if name.endswith(ext):
                defined[ext] |= _defines(name, data)
    out: dict[str, str | bytes] = dict(uploads)
    for name, text in base.items():
        if name in uploads:
            continue
        ext = next((e for e in defined if name.endswith(e)), None)
        if ext is not None and _defines(name, text) & defined[ext]:
            continue
        out[name] = text
    return out
