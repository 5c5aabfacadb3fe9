"""Running process instances: start, complete a work item, deliver an event, persist.

Every public method is one step of one instance inside the caller's
transaction: restore the state onto the cached spec, run the engine, mirror
the human tasks into :class:`WorkItem` rows, write the state back with an
optimistic version check and append to the audit log.  The caller commits.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import CodeEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .audit import record_audit, write_deferred
from .clock import Clock
from .definitions import SPEC_CACHE, SpecCache, get_definition
from .errors import Conflict, NotFound, ProcessError, StaleInstance, msg
from .ids import reserve
from .models import ProcessInstance, SlaClock, WorkItem
from .spiff import BpmnWorkflow, ParsedProcess, deliver_to_boundary, dump_state, load_state, ready_human_tasks
from .writes import write_rows


@dataclass
class StepResult:
    """What one step changed: the instance, the work items it opened and closed, how it ended."""

    instance: ProcessInstance
    opened: list[WorkItem] = field(default_factory=list)
    closed: list[WorkItem] = field(default_factory=list)
    ended: bool = False
    end_status: str | None = None
    caught: int = 1
    # task data of each newly opened work item, keyed by task id (for the domain to read counters)
    opened_data: dict[str, dict] = field(default_factory=dict)
    open_items: list[WorkItem] = field(default_factory=list)
    started: bool = False  # the step started the instance (it has nothing stored before it)


@dataclass
class Trace:
    completed: dict[str, int] = field(default_factory=dict)  # element id -> times completed (loops repeat)
    active: set[str] = field(default_factory=set)  # waiting for people, or running


class WorkflowCache:
    """Restored workflows of recently committed instance versions, to skip restoring them again.

    An entry is published only after its transaction commits (see the session
    hooks below) and is *taken* out when used: an action that fails leaves
    nothing stale behind, and a version committed by another process simply
    misses.  (instance id, lock version) identifies the state exactly, because
    the optimistic lock lets only one writer ever commit a given version.
    """

    def __init__(self, size: int = 1024):
        self.size = size
        self._items: OrderedDict[int, tuple[int, BpmnWorkflow]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: int, version: int) -> BpmnWorkflow | None:
        with self._lock:
            entry = self._items.pop(instance_id, None)
        if entry is not None and entry[0] == version:
            return entry[1]
        return None

    def put(self, instance_id: int, version: int, workflow: BpmnWorkflow) -> None:
        with self._lock:
            self._items[instance_id] = (version, workflow)
            self._items.move_to_end(instance_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


WORKFLOW_CACHE = WorkflowCache()
# id(instance) -> (instance, workflow) stepped in this transaction, published to the cache after the commit
_PENDING = "huying.pending_workflows"


@event.listens_for(Session, "after_commit")
def _publish_committed_workflows(session):
    for instance, workflow in session.info.pop(_PENDING, {}).values():
        WORKFLOW_CACHE.put(instance.id, instance.lock_version, workflow)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_workflows(session):
    session.info.pop(_PENDING, None)


def _lookup(data: dict, path: str):
    value = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class ProcessRuntime:
    """Runs instances for one session; ``clock`` gives every timestamp."""

    def __init__(self, session: Session, clock: Clock, cache: SpecCache = SPEC_CACHE):
        self.session = session
        self.clock = clock
        self.cache = cache

    # ---- public API -------------------------------------------------------------------------
    def start(self, process_id: str, data: dict, *, business_key: str, actor: str,
              version: int | None = None, instance_id: int | None = None) -> StepResult:
        """Start the latest (or the given) version of ``process_id`` with ``data``.

        The instance's id is taken first (``instance_id``: one the caller took with
        :func:`engine.ids.reserve`); its row goes out with the caller's flush, with the work items
        and the caller's own changes, so nothing is written before the step has run.
        """
        definition = get_definition(self.session, process_id, version)
        parsed = self.cache.get(definition)
        now = self.clock.now()
        workflow = parsed.new_workflow(data)
        if instance_id is None:
            instance_id, = reserve(self.session, ProcessInstance)
        instance = ProcessInstance(id=instance_id, definition=definition, business_key=business_key,
                                   status="running", state=b"", lock_version=1, created_at=now, updated_at=now)
        self.session.add(instance)
        self._run(workflow)
        result = self._save(instance, workflow, parsed, open_items=[], closed_task=None, actor=actor, action=None,
                            flush=False)
        result.started = True
        record_audit(self.session, at=now, actor=actor, action="process_started", subject=business_key,
                     instance_id=instance.id, new={"process": process_id, "version": definition.version})
        return result

    def complete(self, item: WorkItem, data: dict, *, actor: str, action: str,
                 expected_instance_version: int | None = None,
                 open_items: list[WorkItem] | None = None) -> StepResult:
        """Complete the human task behind ``item`` with ``data``.

        Raises :class:`Conflict` if the item is no longer open or the instance
        changed underneath (someone else acted first); nothing is written then.
        ``open_items``: the instance's open work items, if the caller already read
        them (saves a query); otherwise they are read here.
        """
        if item.state != "open":
            raise Conflict(msg("work item %(id)s (%(title)s) is already %(state)s by %(by)s", id=item.id,
                               title=item.title, state=item.state, by=item.closed_by) if item.closed_by else
                           msg("work item %(id)s (%(title)s) is already %(state)s", id=item.id, title=item.title,
                               state=item.state))
        instance = item.instance
        if expected_instance_version is not None and instance.lock_version != expected_instance_version:
            raise Conflict(msg("%(number)s changed since you loaded it; reload and try again",
                               number=instance.business_key))
        parsed, workflow = self._load(instance)
        task = self._task(workflow, item)
        if not task.has_state(TaskState.READY):
            raise Conflict(msg("work item %(id)s (%(title)s) cannot be completed now (%(task_state)s)",
                               id=item.id, title=item.title, task_state=task.state_name))
        task.data.update(data)
        try:
            task.run()
        except (SpiffWorkflowException, TypeError, KeyError, ValueError, AttributeError, NameError) as exc:
            raise ProcessError(msg("%(title)s: %(error)s", title=item.title, error=str(exc))) from None
        self._run(workflow)
        if open_items is None:
            open_items = self._open_items(instance)
        return self._save(instance, workflow, parsed, open_items=open_items, closed_task=item,
                          actor=actor, action=action, flush=False)

    def deliver(self, item: WorkItem, event_name: str, payload: dict | None, *, actor: str,
                open_items: list[WorkItem] | None = None) -> StepResult:
        """Deliver ``event_name`` to the boundary events on ``item``'s task (and only there).

        If nothing waits for it (already handled, or the task moved on) this is a
        no-op and ``caught`` is 0.
        """
        if item.state != "open":
            return StepResult(instance=item.instance, caught=0)
        instance = item.instance
        parsed, workflow = self._load(instance)
        task = self._task(workflow, item)
        caught = deliver_to_boundary(task, event_name, payload)
        if caught == 0:
            return StepResult(instance=instance, caught=0)
        self._run(workflow)
        if open_items is None:
            open_items = self._open_items(instance)
        result = self._save(instance, workflow, parsed, open_items=open_items, closed_task=None, actor=actor,
                            action=None, flush=False)
        result.caught = caught
        return result

    def waiting_events(self, item: WorkItem) -> list[str]:
        """Names of the events the boundary events on ``item``'s task wait for."""
        _parsed, workflow = self._load(item.instance)
        task = self._task(workflow, item)
        names = []
        for sibling in task.parent.children if task.parent else []:
            if sibling is not task and isinstance(sibling.task_spec, CatchingEvent) \
                    and sibling.has_state(TaskState.WAITING):
                names.append(sibling.task_spec.event_definition.name)
        return names

    def open_items(self, instance: ProcessInstance) -> list[WorkItem]:
        return self._open_items(instance)

    def trace(self, instance: ProcessInstance) -> Trace:
        """Where the instance is and where it has been, by BPMN element id (for a highlighted diagram).

        Read from the stored state (never the shared cache: a read must not race a step).
        """
        workflow = load_state(instance.state, self.cache.get(instance.definition))
        trace = Trace()
        for wf in (workflow, *workflow.subprocesses.values()):
            for task in wf.tasks.values():
                spec = task.task_spec
                element = spec.bpmn_id
                if not element:
                    continue
                if task._state == TaskState.COMPLETED:
                    trace.completed[element] = trace.completed.get(element, 0) + 1
                elif task._state in (TaskState.READY, TaskState.STARTED) or (
                        task._state == TaskState.WAITING and not hasattr(spec, "cancel_activity")):
                    trace.active.add(element)
        return trace

    # ---- internals --------------------------------------------------------------------------
    def _load(self, instance: ProcessInstance) -> tuple[ParsedProcess, BpmnWorkflow]:
        parsed = self.cache.get(instance.definition)
        # a second step on the instance in this transaction (the scheduler's batch) goes on from the first
        pending = self.session.info.get(_PENDING, {}).get(id(instance))
        if pending is not None and pending[0] is instance:
            return parsed, pending[1]
        workflow = WORKFLOW_CACHE.take(instance.id, instance.lock_version)
        if workflow is None:
            workflow = load_state(instance.state, parsed)
        return parsed, workflow

    @staticmethod
    def _task(workflow: BpmnWorkflow, item: WorkItem):
        task = workflow.get_task_from_id(UUID(item.task_id))
        if task is None:
            raise NotFound(msg("task of work item %(id)s not found in %(number)s", id=item.id,
                               number=item.instance.business_key))
        return task

    def _open_items(self, instance: ProcessInstance) -> list[WorkItem]:
        if instance.id is None:
            return []
        return list(self.session.scalars(select(WorkItem).where(WorkItem.instance_id == instance.id,
                                                                WorkItem.state == "open")))

    @staticmethod
    def _run(workflow: BpmnWorkflow) -> None:
        try:
            workflow.do_engine_steps()
        except SpiffWorkflowException as exc:
            raise ProcessError(msg("the process failed: %(error)s", error=str(exc))) from None
        except (TypeError, KeyError, ValueError, AttributeError, NameError) as exc:
            # SpiffWorkflow lets some data errors through raw (e.g. a multi-instance without input)
            raise ProcessError(msg("the process failed: %(error)s", error=f"{type(exc).__name__}: {exc}")) from None
        uncaught = [e for e in workflow.get_events() if isinstance(e.event_definition, CodeEventDefinition)]
        if uncaught:
            names = ", ".join(f"{type(e.event_definition).__name__.replace('EventDefinition', '').lower()} "
                              f"'{e.event_definition.code or e.event_definition.name}'" for e in uncaught)
            raise ProcessError(msg("the process threw %(events)s and nothing caught it", events=names))

    def _save(self, instance, workflow, parsed, *, open_items, closed_task, actor, action,
              flush: bool = True) -> StepResult:
        now = self.clock.now()
        result = StepResult(instance=instance)
        ready = {str(t.id): t for t in ready_human_tasks(workflow)}
        by_task = {wi.task_id: wi for wi in open_items}
        if closed_task is not None:
            by_task.setdefault(closed_task.task_id, closed_task)
        for task_id, wi in by_task.items():
            if task_id in ready:
                continue
            completed = closed_task is not None and task_id == closed_task.task_id
            wi.state = "completed" if completed else "cancelled"
            wi.closed_at = now
            wi.closed_by = actor if completed else None
            wi.action = action if completed else None
            result.closed.append(wi)
        still_open = [wi for tid, wi in by_task.items() if tid in ready]
        for task_id, task in ready.items():
            if task_id in by_task:
                continue
            wi = self._new_item(instance, workflow, task, now)
            self.session.add(wi)
            result.opened.append(wi)
            result.opened_data[task_id] = task.data
        result.open_items = still_open + result.opened
        values = {"state": dump_state(workflow), "updated_at": now, "next_wakeup_at": self._next_wakeup(workflow)}
        if workflow.completed:
            result.ended = True
            end = self._end_event(workflow)
            values["status"] = "completed"
            values["end_event"] = end.task_spec.bpmn_id if end is not None else None
            result.end_status = (end.task_spec.extensions.get("properties", {}).get("status")
                                 if end is not None else None)
        # written at the next flush with the step's other rows (engine.writes: one UPDATE, version checked),
        # however many steps come before it
        for key, value in values.items():
            setattr(instance, key, value)
        self.session.info.setdefault(_PENDING, {})[id(instance)] = (instance, workflow)
        if flush:
            self.flush()
        return result

    def flush(self) -> None:
        """Write everything pending; a lost optimistic lock becomes :class:`StaleInstance`.

        A step leaves its writes pending so the caller's own changes (the call,
        SLA clocks, the audit event) go out in the same single flush.
        """
        keys = [inst.business_key for inst, _wf in self.session.info.get(_PENDING, {}).values()]
        try:
            # the step's own rows, as plain statements; the instance row first (one lock order for all);
            # the audit and SLA event rows collected so far go with them
            write_rows(self.session, (ProcessInstance, WorkItem, SlaClock), first=(ProcessInstance,),
                       then=lambda batch: write_deferred(self.session, batch))
            self.session.flush()  # anything else
        except StaleDataError:
            raise StaleInstance(msg("%(numbers)s was changed by someone else at the same time; "
                                    "nothing was saved, reload and try again", numbers=", ".join(keys))
                                if keys else msg("the call was changed by someone else at the same time; "
                                                 "nothing was saved, reload and try again")) from None

    @staticmethod
    def _new_item(instance, workflow, task, now) -> WorkItem:
        spec = task.task_spec
        props = dict(spec.extensions.get("properties", {})) if hasattr(spec, "extensions") else {}
        owner_path = props.get("owner")
        owner = _lookup(task.data, owner_path) if owner_path else None
        context_keys = [k.strip() for k in props.get("context", "").split(",") if k.strip()]
        context = {k: task.data.get(k) for k in context_keys if task.data.get(k) is not None}
        via = None
        if task.workflow is not workflow:
            parent = workflow.get_task_from_id(task.workflow.parent_task_id)
            while parent is not None and parent.task_spec.bpmn_id is None:
                parent = parent.parent
            via = parent.task_spec.bpmn_id if parent is not None else None
        return WorkItem(instance=instance, task_id=str(task.id), task_name=spec.bpmn_id or spec.name,
                        title=spec.bpmn_name or spec.name, lane=spec.lane,
                        owner_unit=str(owner) if owner is not None else None, via=via, properties=props,
                        context=context, state="open", created_at=now)

    @staticmethod
    def _end_event(workflow):
        ends = [t for t in workflow.get_tasks(state=TaskState.COMPLETED)
                if t.workflow is workflow and isinstance(t.task_spec, EndEvent)]
        return max(ends, key=lambda t: t.last_state_change) if ends else None

    @staticmethod
    def _next_wakeup(workflow) -> datetime | None:
        times = []
        for pending in workflow.waiting_events():
            if pending.event_type == TimerEventDefinition.__name__ and isinstance(pending.value, str):
                try:
                    times.append(datetime.fromisoformat(pending.value))
                except ValueError:
                    continue
        return min(times) if times else None
