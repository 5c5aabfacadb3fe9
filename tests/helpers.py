"""A small driver for tests: every step is its own transaction, as a real request is.

Each step restores the workflow from the state stored in the database and saves
it back (the process's cache of restored workflows is emptied first, as on a
worker that did not run the previous step), so every scenario played through it
also saves and restores the workflow between steps.
"""
from __future__ import annotations

from sqlalchemy import func, select

from engine.models import AuditEvent, ProcessInstance, WorkItem
from engine.runtime import WORKFLOW_CACHE
from workflows.calls import act_on_work_item, deliver_process_event, file_call, my_work, show_call
from workflows.context import ServiceContext
from workflows.models import Call
from workflows.org import get_user


class District:
    def __init__(self, services):
        self.services = services
        self.clock = services.clock

    def session(self):
        return self.services.session_factory()

    @staticmethod
    def from_storage():
        """The next step restores its workflow from the database, not from this process's cache."""
        WORKFLOW_CACHE.clear()

    def ctx(self, session, username):
        return ServiceContext(session, self.clock, get_user(session, username), sla=self.services.sla)

    def file(self, username="qingnian.grid", **data) -> str:
        data.setdefault("description", "测试呼叫")
        data.setdefault("location", "东园二街1号")
        with self.session() as s:
            call = file_call(self.ctx(s, username), data)
            s.commit()
            return call.number

    def items(self, number, username=None, task=None):
        """Open work items of a call (optionally only those ``username`` may act on, or of one task)."""
        with self.session() as s:
            call = s.scalar(select(Call).where(Call.number == number))
            if username is not None:
                entries = [e.item for e in my_work(self.ctx(s, username)) if e.call.id == call.id]
            else:
                entries = list(s.scalars(select(WorkItem).where(WorkItem.instance_id == call.instance_id,
                                                               WorkItem.state == "open").order_by(WorkItem.id)))
            return [wi for wi in entries if task is None or wi.task_name == task]

    def item(self, number, username, task=None):
        found = self.items(number, username, task)
        assert len(found) == 1, f"{username} should have exactly one item on {number} ({task}): {found}"
        return found[0]

    def do(self, number, username, action, data=None, task=None):
        """Act as ``username`` on their only open item of ``number`` (optionally of ``task``)."""
        wi = self.item(number, username, task)
        return self.act(wi.id, username, action, data)

    def act(self, item_id, username, action, data=None):
        self.from_storage()
        with self.session() as s:
            out = act_on_work_item(self.ctx(s, username), item_id, action, data)
            s.commit()
            return out

    def deliver(self, number, task, owner, event, username="scheduler-test"):
        """Deliver an SLA event to the open ``task`` item owned by ``owner`` (as the scheduler will)."""
        [wi] = [w for w in self.items(number) if w.task_name == task and w.owner_unit == owner]
        self.from_storage()
        with self.session() as s:
            ctx = self.ctx(s, "admin")
            caught = deliver_process_event(ctx, wi.id, event)
            s.commit()
            return caught

    def call(self, number) -> Call:
        with self.session() as s:
            return s.scalar(select(Call).where(Call.number == number))

    def view(self, number, username="huangpu.supervisor"):
        with self.session() as s:
            return show_call(self.ctx(s, username), number)

    def open_tasks(self, number):
        return sorted((wi.task_name, wi.owner_unit) for wi in self.items(number))

    def counts(self) -> dict:
        with self.session() as s:
            return {m.__name__: s.scalar(select(func.count()).select_from(m))
                    for m in (Call, WorkItem, ProcessInstance, AuditEvent)}

    def state_of(self, number):
        with self.session() as s:
            call = s.scalar(select(Call).where(Call.number == number))
            inst = s.get(ProcessInstance, call.instance_id)
            return inst.state, inst.lock_version

    # ---- time ----------------------------------------------------------------------------------
    def sweep(self) -> int:
        from web.scheduler import sweep_once

        self.from_storage()
        return sweep_once(self.services)["fire_due_sla_clocks"]

    def advance_to(self, when) -> int:
        """Move the virtual clock to ``when`` (Asia/Shanghai if naive) and sweep once."""
        from engine.clock import ensure_aware

        self.clock.set(ensure_aware(when))
        return self.sweep()

    def clocks(self, number):
        from engine.models import SlaClock

        with self.session() as s:
            return list(s.scalars(select(SlaClock).where(SlaClock.subject == number).order_by(SlaClock.id)))

    def clock_of(self, number, stage, unit):
        found = [c for c in self.clocks(number) if c.stage == stage and c.unit == unit]
        assert found, f"no {stage} clock for {unit} on {number}"
        return found[-1]

    def sla_events(self, number):
        from engine.models import SlaEvent

        with self.session() as s:
            return [(e.kind, e.stage, e.unit) for e in s.scalars(
                select(SlaEvent).where(SlaEvent.subject == number).order_by(SlaEvent.id))]
