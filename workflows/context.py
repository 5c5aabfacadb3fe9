"""The service context: who acts, in which transaction, at what time."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.runtime import ProcessRuntime

from .models import User


@dataclass
class ServiceContext:
    """Passed to every service function.  The entry point owns (and commits) the session."""

    session: Session
    clock: Clock
    user: User

    @property
    def runtime(self) -> ProcessRuntime:
        return ProcessRuntime(self.session, self.clock)

    @property
    def actor(self) -> str:
        return self.user.username
