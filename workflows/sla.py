"""SLA glue for the dispatch application: which facts pick a target, the default keeper."""
from __future__ import annotations

import threading

from config.settings import Settings, load_settings
from engine.sla import CalendarProvider, SlaKeeper, load_calendar_file

from .models import Call

_default: SlaKeeper | None = None
_lock = threading.Lock()


def sla_facts(call: Call) -> dict[str, str]:
    """What the SLA policy matches on, besides the stage."""
    return {"category": call.category_code, "sla_class": call.sla_class, "urgency": call.urgency}


def build_keeper(settings: Settings) -> SlaKeeper:
    office, overrides = load_calendar_file(settings.calendar_file)
    return SlaKeeper(CalendarProvider(settings.office_hours or office, overrides))


def default_keeper() -> SlaKeeper:
    """The keeper built from the default settings (tests and tools that do not pass one)."""
    global _default
    with _lock:
        if _default is None:
            _default = build_keeper(load_settings({}))
        return _default
