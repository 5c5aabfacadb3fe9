"""Errors the engine raises; the entry points map them to exit codes / HTTP statuses."""
from __future__ import annotations


class EngineError(Exception):
    """Base class; ``code`` is a stable machine-readable identifier."""

    code = "engine_error"

    def __init__(self, message: str, *, field_errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


class InvalidDefinition(EngineError):
    """A BPMN/DMN file is unsafe, malformed or not executable; names the element."""

    code = "invalid_definition"


class NotFound(EngineError):
    code = "not_found"


class Conflict(EngineError):
    """Someone else changed the same instance or work item first; nothing was written."""

    code = "conflict"


class StaleInstance(Conflict):
    """The instance changed between reading and writing it (optimistic lock lost).

    Unlike "already completed", retrying the whole action in a new transaction
    is safe: it re-reads the instance and re-checks everything.
    """


class Forbidden(EngineError):
    code = "forbidden"


class ValidationFailed(EngineError):
    code = "validation_failed"


class ProcessError(EngineError):
    """The process itself failed: a script error, an uncaught escalation or error event."""

    code = "process_error"
