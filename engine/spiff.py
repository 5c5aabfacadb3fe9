"""Everything that touches SpiffWorkflow's internals lives here: parser, scoped events, serializer.

Two SpiffWorkflow 3.2 behaviours are corrected on purpose:

* Spiff's escalation events are *broadcast* to every catcher in the instance
  (``SpiffItemAwareEventDefinition.throw`` drops the target that plain BPMN
  escalations carry).  With one department sub-process per department, a
  "reassign" ruling for one department would move all of them.  BPMN scopes an
  escalation to where it was thrown, widening outwards; so does
  :class:`ScopedEscalationEventDefinition`.
* The default serializer embeds the whole spec in every snapshot (~half of it).
  We store the spec once per definition version and snapshots hold only state.
"""
from __future__ import annotations

import ast
import copy
import gzip
import json
import logging
import os
import time as _time
from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID, SafeUUID

import orjson
import zstandard
from SpiffWorkflow import task as _spiff_task_module
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.util.subworkflow import BpmnSubWorkflow
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.specs.event_definitions import EscalationEventDefinition
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow

__all__ = ["BpmnWorkflow", "ready_human_tasks", "ParsedProcess", "new_parser", "scoped_events", "SCRIPT_ENGINE",
           "dump_state", "load_state", "dump_specs", "load_specs", "deliver_to_boundary"]


# SpiffWorkflow builds structured log "extras" (walking the task's workflow for names)
# on every task state change, even when its logger is off: ~10 % of a step here.
# Build them only when someone listens.
_TASK_LOG = logging.getLogger("spiff.task")


def _log_extras_only_when_logging(cls, logger: logging.Logger) -> None:
    """Replace ``cls.collect_log_extras`` by one that builds the extras only if ``logger`` logs INFO."""
    collect = cls.collect_log_extras

    def collect_if_logging(self, dct=None):
        if logger.isEnabledFor(logging.INFO):
            return collect(self, dct)
        return dct or {}

    cls.collect_log_extras = collect_if_logging


_log_extras_only_when_logging(Task, _TASK_LOG)
_log_extras_only_when_logging(Workflow, logging.getLogger("spiff.workflow"))
_set_state = Task._set_state


def _set_state_quietly(self, value: int) -> None:
    """``Task._set_state`` without formatting a log message nobody listens to (every state change)."""
    if _TASK_LOG.isEnabledFor(logging.DEBUG):
        return _set_state(self, value)
    if value != self._state:
        now = _time.time()
        if _TASK_LOG.isEnabledFor(logging.INFO):
            _TASK_LOG.info(f"State changed to {TaskState.get_name(value)}",
                           extra=self.collect_log_extras({"elapsed": now - self.last_state_change}))
        self.last_state_change = now
        self._state = value


Task._set_state = _set_state_quietly


def _uuid4(_urandom=os.urandom, _from_bytes=int.from_bytes, _new=object.__new__, _set=object.__setattr__) -> UUID:
    """``uuid.uuid4()`` (the same random bits, version and variant) without ``UUID.__init__``'s argument
    handling: SpiffWorkflow makes a task id for every task it adds or predicts."""
    value = _from_bytes(_urandom(16), "big")
    value = (value & ~(0xC000 << 48) | (0x8000 << 48)) & ~(0xF000 << 64) | (4 << 76)
    uid = _new(UUID)
    _set(uid, "int", value)
    _set(uid, "is_safe", SafeUUID.unknown)
    return uid


_spiff_task_module.uuid4 = _uuid4


class ScopedEscalationEventDefinition(EscalationEventDefinition):
    """An escalation caught in the workflow that threw it, else the enclosing ones, outwards."""

    def throw(self, my_task):
        payload = None
        if self.expression is not None:
            payload = my_task.workflow.script_engine.evaluate(my_task, self.expression)
        event = BpmnEvent(self, payload=payload)
        manager = my_task.workflow.top_workflow.event_manager
        scope = my_task.workflow
        while scope is not None:
            catchers = [t for t in list(manager.tasks.values())
                        if t.workflow is scope and t.task_spec.event_definition.catches(t, event)]
            if catchers:
                for task in catchers:
                    task.task_spec.catch(task, event)
                    task.task_spec._update(task)
                return
            scope = scope.parent_workflow
        # Nothing caught it: surface it, so the engine reports an error instead of silence.
        my_task.workflow.top_workflow.bpmn_events.append(event)


class LoopSafeBoundaryEventSplit(BoundaryEventSplit):
    """A boundary-event split that also works when a loop re-enters its task.

    SpiffWorkflow 3.2 predicts the task under a split while the split itself is
    still only a possibility (MAYBE); when the loop really reaches the split, the
    task keeps the stale MAYBE state and a multi-instance task under it then
    fails with "Attempt to add non-predicted child to predicted task".  Running
    the split makes its main task definite, as the first pass does.
    """

    def _run_hook(self, my_task):
        for task in my_task.children:
            if isinstance(task.task_spec, self.event_type):
                if task.has_state(TaskState.PREDICTED_MASK):
                    task._set_state(TaskState.WAITING)
            elif task.has_state(TaskState.PREDICTED_MASK):
                task._set_state(TaskState.FUTURE)
        return True


def _update_waiting(workflow) -> None:
    """SpiffWorkflow re-evaluates every WAITING task after each completed task by walking the whole
    tree with its iterator (~10 % of a step here); a flat scan of the task dict finds the same
    tasks.  Those that start waiting during the pass are looked at after the next completion,
    as a join's inputs are anyway."""
    for task in [t for t in workflow.tasks.values() if t._state == TaskState.WAITING]:
        if task._state == TaskState.WAITING:
            task.task_spec._update(task)


BpmnSubWorkflow.update_waiting_tasks = _update_waiting


class HuyingWorkflow(BpmnWorkflow):
    """BpmnWorkflow whose engine loop survives a sub-process being cancelled while it runs.

    SpiffWorkflow 3.2 collects the active sub-processes, then runs each and looks
    up its parent task; when an event inside one of them (our 督办 escalation)
    cancels the call activity, that sub-process and its parent task are gone and
    the lookup raises "task ... was not found".  Skip what was deleted meanwhile.
    """

    def _alive(self, subprocess) -> bool:
        if self.subprocesses.get(subprocess.parent_task_id) is not subprocess:
            return False
        try:
            task = self.get_task_from_id(subprocess.parent_task_id)
        except TaskNotFoundException:
            return False
        return task is not None and (task.workflow is self or self._alive(task.workflow))

    def update_waiting_tasks(self):
        _update_waiting(self)

    def _do_engine_steps(self, will_complete_task=None, did_complete_task=None):
        def update_workflow(wf):
            count = 0
            # A flat scan of the task dict instead of SpiffWorkflow's tree iterator: the same READY
            # tasks (in creation order), at a fraction of the cost on a tree of 100-200 tasks.
            for task in [t for t in wf.tasks.values() if t._state == TaskState.READY]:
                if wf is not self and not self._alive(wf):
                    break
                if not task.task_spec.manual and task.has_state(TaskState.READY):
                    if will_complete_task is not None:
                        will_complete_task(task)
                    task.run()
                    count += 1
                    if did_complete_task is not None:
                        did_complete_task(task)
            return count

        active = self.get_active_subprocesses()
        for subprocess in sorted(active, key=lambda v: v.depth, reverse=True):
            count = None
            while (count is None or count > 0) and self._alive(subprocess):
                count = update_workflow(subprocess)
            if subprocess.parent_task_id is not None and self._alive(subprocess):
                task = self.get_task_from_id(subprocess.parent_task_id)
                task.task_spec._update(task)
        count = update_workflow(self)
        return count > 0 or len(self.get_active_subprocesses()) > len(active)


def scoped_events(specs) -> None:
    """Apply our two corrections to parsed specs (in place): scoped escalations, loop-safe splits."""
    for spec in specs:
        for task_spec in spec.task_specs.values():
            definition = getattr(task_spec, "event_definition", None)
            if type(definition) is EscalationEventDefinition:
                definition.__class__ = ScopedEscalationEventDefinition
            if type(task_spec) is BoundaryEventSplit:
                task_spec.__class__ = LoopSafeBoundaryEventSplit


class StateOnlyWorkflowConverter(BpmnWorkflowConverter):
    """Serializes a workflow without its specs; restoring takes the cached specs as arguments."""

    def to_dict(self, workflow):
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        if spec is None:
            raise ValueError("a state-only snapshot needs the cached spec to restore")
        from uuid import UUID

        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _registry():
    config = dict(SPIFF_CONFIG)
    config[ScopedEscalationEventDefinition] = config[EscalationEventDefinition]
    config[LoopSafeBoundaryEventSplit] = config[BoundaryEventSplit]
    spec_registry = BpmnWorkflowSerializer.configure(config)
    state_config = dict(config)
    state_config[HuyingWorkflow] = StateOnlyWorkflowConverter
    state_registry = BpmnWorkflowSerializer.configure(state_config)
    return BpmnWorkflowSerializer(spec_registry), BpmnWorkflowSerializer(state_registry)


_SPEC_SERIALIZER, _STATE_SERIALIZER = _registry()

# Diagrams get plain task-data evaluation and a few harmless builtins; deploying
# BPMN is an admin-only act (scripts run with Python's eval/exec).
@lru_cache(maxsize=4096)
def _compiled(source: str, mode: str):
    return compile(source, "<string>", mode)


class CompiledTaskDataEnvironment(TaskDataEnvironment):
    """SpiffWorkflow's task-data environment, compiling each expression and script once, not per use
    (``eval``/``exec`` of a string compile it every time: gateways, DMN rules and scripts run per step)."""

    def evaluate(self, expression, context, external_context=None):
        my_globals = copy.copy(self.globals)  # as SpiffWorkflow: else later evaluations see this one's names
        self._prepare_context(context)
        my_globals.update(external_context or {})
        my_globals.update(context)
        return eval(_compiled(expression, "eval"), my_globals)

    def execute(self, script, context, external_context=None):
        self.check_for_overwrite(context, external_context or {})
        my_globals = copy.copy(self.globals)
        self._prepare_context(context)
        my_globals.update(external_context or {})
        context.update(my_globals)
        try:
            exec(_compiled(script, "exec"), context)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True


@lru_cache(maxsize=4096)
def _syntax_error(expression: str) -> SyntaxError | None:
    try:
        ast.parse(expression)
    except SyntaxError as exc:
        return exc
    return None


class CachingScriptEngine(PythonScriptEngine):
    """Remembers which expressions parse (the DMN engine checks every rule's text on every decision)."""

    def validate(self, expression):
        error = _syntax_error(expression)
        if error is not None:
            raise SyntaxError(*error.args)


SCRIPT_ENGINE = CachingScriptEngine(environment=CompiledTaskDataEnvironment({
    "dict": dict, "list": list, "len": len, "min": min, "max": max, "sorted": sorted, "any": any, "all": all,
}))


def new_parser(validate: bool = True) -> SpiffBpmnParser:
    return SpiffBpmnParser(validator=BpmnValidator() if validate else None)


@dataclass
class ParsedProcess:
    process_id: str
    spec: object
    subprocess_specs: dict

    def new_workflow(self, data: dict) -> BpmnWorkflow:
        workflow = HuyingWorkflow(self.spec, self.subprocess_specs, script_engine=SCRIPT_ENGINE)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.set_data(**data)
        return workflow


def dump_specs(parsed: ParsedProcess) -> str:
    return json.dumps({
        "spec": _SPEC_SERIALIZER.to_dict(parsed.spec),
        "subprocess_specs": {k: _SPEC_SERIALIZER.to_dict(v) for k, v in parsed.subprocess_specs.items()},
    })


def load_specs(process_id: str, text: str) -> ParsedProcess:
    dct = json.loads(text)
    return ParsedProcess(process_id, _SPEC_SERIALIZER.from_dict(dct["spec"]),
                         {k: _SPEC_SERIALIZER.from_dict(v) for k, v in dct["subprocess_specs"].items()})


# ---- state snapshots ---------------------------------------------------------------------------------
# Our own compact codec for the workflow state.  SpiffWorkflow's serializer walks
# every value through its type registry and rebuilds each task's data by deep-
# merging its parent's (~5 ms per snapshot for a call here); task data in our
# processes is plain JSON, so the codec writes the task tree as rows and stores
# each distinct data dict once (orjson; a finished task's encoded data is kept
# on the task, since it never changes again).  Any value plain JSON cannot carry
# (a timer's datetime, a pending BPMN event, a Decimal) falls back to
# SpiffWorkflow's own format, which :func:`load_state` still reads, as it reads
# the earlier versions of ours (``huying-state-1``: data blobs as JSON text;
# ``huying-state-2``: parents and children by task id).  Since version 3 a task
# names its parent and children by their place in the workflow's row list: the
# ids (36 characters each, three times per task) were half the snapshot.
FAST_FORMAT = "huying-state-3"
_FORMAT_2 = "huying-state-2"
_FORMAT_1 = "huying-state-1"
_FINISHED = TaskState.COMPLETED | TaskState.CANCELLED
# datetimes, dataclasses and subclasses of str/int/dict are not plain JSON here: refuse them (TypeError)
# instead of letting orjson turn them into strings that would come back as another type
_JSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_EMPTY = b"{}"
# Snapshots are zstd-compressed at level 1: on a call's 25 KB snapshot that is 49 us and 4.7 KB where
# gzip level 3 took 156 us for 5.1 KB, and it decompresses 4x faster.  Snapshots written with gzip
# (before) are still read: the two formats' magic numbers tell them apart.
_ZSTD_LEVEL = 1
_GZIP_MAGIC = b"\x1f\x8b"


def ready_human_tasks(workflow) -> list:
    """READY manual tasks of the instance and its sub-processes (a flat scan, creation order)."""
    found = []
    live = [sp for sp in workflow.subprocesses.values() if not sp.completed and workflow._alive(sp)]
    for wf in (workflow, *live):
        found.extend(t for t in wf.tasks.values() if t._state == TaskState.READY and t.task_spec.manual)
    return found


def _encode(value) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTS)


def _rows(workflow, blobs: dict[bytes, int]) -> dict:
    rows = []
    tasks = workflow.tasks
    # parents and children by row (a foreign one by its id).  Looked up by object identity first: a
    # task's parent and children are normally the very id objects keying the task dict, and hashing
    # a UUID is a Python-level call (some 900 per snapshot here).  Identity is safe because those
    # objects are alive, so no other object has their id(); an equal id that is another object
    # falls back to the lookup by value.
    by_identity = {id(tid): i for i, tid in enumerate(tasks)}
    place = None

    def placed(uid):
        nonlocal place
        at = by_identity.get(id(uid))
        if at is None:
            if place is None:
                place = {tid: i for i, tid in enumerate(tasks)}
            at = place.get(uid)
        return at if at is not None else str(uid)

    for task in tasks.values():
        # a finished task's data never changes again: keep its JSON on the task (workflows are cached)
        text = task.__dict__.get("_hy_text")
        if text is None or not task._state & _FINISHED:
            text = _encode(task.data) if task.data else _EMPTY
            if task._state & _FINISHED:
                task._hy_text = text
        index = blobs.setdefault(text, len(blobs))
        parent = task._parent
        if parent is not None:
            parent = by_identity.get(id(parent))
            if parent is None:
                parent = placed(task._parent)
        children = [by_identity.get(id(c)) for c in task._children]
        if None in children:
            children = [placed(c) for c in task._children]
        # (str(UUID) is not free and a task's id never changes: the text is kept on the task)
        rows.append([task.__dict__.get("_hy_id") or _name(task), parent, children, task._state,
                     task.task_spec.name, task.triggered, task.last_state_change, task.internal_data, index])
    return {"data": workflow.data, "correlations": workflow.correlations,
            "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
            "success": workflow.success, "completed": workflow.completed, "root": str(workflow.task_tree.id),
            "tasks": rows}


def _name(task) -> str:
    task._hy_id = text = str(task.id)
    return text


def _dump_fast(workflow) -> bytes:
    if workflow.bpmn_events:
        raise TypeError("pending events")
    blobs: dict[bytes, int] = {}
    top = _rows(workflow, blobs)
    subs = []
    for pid, sub in sorted(workflow.subprocesses.items(), key=lambda kv: kv[1].depth):
        if workflow._alive(sub):  # a sub-process whose call activity was cancelled and removed is dropped
            subs.append([str(pid), sub.spec.name, _rows(sub, blobs)])
    doc = {"format": FAST_FORMAT, "workflow": top, "subprocesses": subs,
           "blobs": [orjson.Fragment(b) for b in blobs]}
    return _compress(_encode(doc))


def _compress(raw: bytes) -> bytes:
    # (a compressor object is not thread-safe, and costs ~3 us to make)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw)


def _decompress(blob: bytes) -> bytes:
    if blob[:2] == _GZIP_MAGIC:
        return gzip.decompress(blob)
    return zstandard.ZstdDecompressor().decompress(blob)


def _uuid(text: str, _new=object.__new__, _set=object.__setattr__, _unknown=SafeUUID.unknown) -> UUID:
    """``UUID(text)`` for the canonical form we wrote, without its parsing (~1/3 of a restore)."""
    value = _new(UUID)
    _set(value, "int", int(text.replace("-", ""), 16))
    _set(value, "is_safe", _unknown)
    return value


def _restore_rows(workflow, dct: dict, shared: list, own, ids: dict) -> None:
    top = workflow.top_workflow
    tasks = {}
    pool = Task.thread_id_pool
    specs = workflow.spec.task_specs
    new_task = Task.__new__

    def uid(text):  # a foreign id, or one written again (the root, the last task): parse it once
        value = ids.get(text)
        if value is None:
            value = ids[text] = _uuid(text)
        return value

    rows = dct["tasks"]
    placed = [uid(row[0]) for row in rows]  # parents and children are rows of this list (or foreign ids)
    for task_id, (tid, parent, children, state, spec_name, triggered, changed, internal, blob) in zip(
            placed, rows, strict=True):
        task = new_task(Task)
        # (the attributes SpiffWorkflow's constructor sets, in one update: a restore makes ~100 tasks)
        task.__dict__.update(
            id=task_id, _hy_id=tid, workflow=workflow, triggered=triggered, task_spec=specs[spec_name],
            _parent=None if parent is None else placed[parent] if type(parent) is int else uid(parent),
            _children=[placed[c] if type(c) is int else uid(c) for c in children], _state=state,
            thread_id=pool, internal_data=internal, last_state_change=changed,
            # finished tasks never change again and may share one parsed copy; the others get their own
            data=shared[blob] if state & _FINISHED else own(blob))
        tasks[task_id] = task
        if state == TaskState.WAITING and isinstance(task.task_spec, CatchingEvent):
            top.event_manager.add_task(task)
    workflow.tasks = tasks
    workflow.task_tree = tasks[uid(dct["root"])]
    workflow.success = dct["success"]
    workflow.completed = dct["completed"]
    workflow.correlations = dct["correlations"]
    workflow.last_task = tasks.get(uid(dct["last_task"])) if dct["last_task"] else None
    workflow.data = dct["data"]


def _load_fast(doc: dict, parsed: ParsedProcess) -> BpmnWorkflow:
    if doc["format"] == _FORMAT_1:  # data blobs as JSON text
        texts = doc["blobs"]
        shared = [json.loads(t) for t in texts]

        def own(i):
            return json.loads(texts[i])
    else:  # data blobs as JSON values
        shared = doc["blobs"]
        texts = [None] * len(shared)

        def own(i):
            if texts[i] is None:
                texts[i] = _encode(shared[i])
            return orjson.loads(texts[i])
    workflow = HuyingWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=SCRIPT_ENGINE, deserializing=True)
    ids: dict[str, UUID] = {}
    _restore_rows(workflow, doc["workflow"], shared, own, ids)
    for pid, spec_name, dct in doc["subprocesses"]:  # parents before children (sorted by depth)
        sub_id = ids.get(pid) or _uuid(pid)
        sub = BpmnSubWorkflow(parsed.subprocess_specs[spec_name], sub_id, workflow, deserializing=True)
        workflow.subprocesses[sub_id] = sub
        _restore_rows(sub, dct, shared, own, ids)
        parent = workflow.get_task_from_id(sub_id)
        sub.completed_event.connect(parent.task_spec._on_subworkflow_completed, parent)
    return workflow


def dump_state(workflow: BpmnWorkflow) -> bytes:
    """The workflow's state without its spec, compressed (zstd)."""
    try:
        return _dump_fast(workflow)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return _compress(_STATE_SERIALIZER.serialize_json(workflow).encode())


def load_state(blob: bytes, parsed: ParsedProcess) -> BpmnWorkflow:
    """Restore a snapshot (ours or SpiffWorkflow's format; zstd or gzip) onto the cached spec."""
    dct = orjson.loads(_decompress(blob))
    if dct.get("format") in (FAST_FORMAT, _FORMAT_2, _FORMAT_1):
        return _load_fast(dct, parsed)
    _STATE_SERIALIZER.migrate(dct)
    workflow = _STATE_SERIALIZER.from_dict(dct, spec=parsed.spec, subprocess_specs=parsed.subprocess_specs)
    workflow.script_engine = SCRIPT_ENGINE
    return workflow


def deliver_to_boundary(task, event_name: str, payload=None) -> int:
    """Deliver a named event to the boundary events attached to ``task`` only.

    Returns how many boundary events caught it (0: nothing waits for it, e.g.
    the task has moved on; callers treat that as already handled).

    A non-interrupting boundary event stays armed while its activity runs, as
    BPMN says (a department may ask for an extension again after a refusal);
    SpiffWorkflow 3.2 disarms it after one catch, so a fresh waiting copy is added.
    """
    caught = 0
    if task.parent is None:
        return 0
    for sibling in task.parent.children:
        spec = sibling.task_spec
        if sibling is task or not isinstance(spec, CatchingEvent):
            continue
        definition = spec.event_definition
        if getattr(definition, "name", None) != event_name or not sibling.has_state(TaskState.WAITING):
            continue
        spec.catch(sibling, BpmnEvent(definition, payload=payload))
        spec._update(sibling)
        caught += 1
        if not spec.cancel_activity and task.has_state(TaskState.READY):
            rearmed = task.parent._add_child(spec, TaskState.WAITING)
            rearmed._sync_children(spec.outputs, TaskState.MAYBE)  # as the split predicted the first one
            task.workflow.top_workflow.event_manager.add_task(rearmed)
    return caught

