"""The service context: who acts, in which transaction, at what time."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.runtime import ProcessRuntime
from engine.sla import SlaKeeper

from .models import User
from .sla import default_keeper


@dataclass
class ServiceContext:
    """Passed to every service function.  The entry point owns (and commits) the session.

    ``user`` is None for the system itself (the scheduler), which then acts as ``system_actor``.
    """

    session: Session
    clock: Clock
    user: User | None
    sla: SlaKeeper = field(default_factory=default_keeper)
    system_actor: str = "system"

    @property
    def runtime(self) -> ProcessRuntime:
        return ProcessRuntime(self.session, self.clock)

    @property
    def actor(self) -> str:
        return self.user.username if self.user is not None else self.system_actor
