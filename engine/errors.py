"""Errors the engine raises; the entry points map them to exit codes / HTTP statuses.

Messages are English sentences for the CLI and the API.  A message built with
:func:`msg` also keeps its template and values (``msg("no work item %(id)s",
id=7)``), so the web UI can show it in the reader's language: it translates the
template (gettext) and fills in the values.  Plain strings are still accepted
(they are shown as they are).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Msg(str):
    """A message for people: the English text (it *is* that string) with its template and values.

    ``template`` is English with named ``%(name)s`` placeholders, ``params`` the
    values (a value may itself be a :class:`Msg`, e.g. a phrase naming a thing).
    Anything that treats the message as a string (the API's JSON, logs, ``str``,
    ``in``, regular expressions) sees the English text.
    """

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, params: Mapping[str, Any] | None = None) -> Msg:
        params = dict(params or {})
        self = super().__new__(cls, template % params)
        self.template = template
        self.params = params
        return self

    def __reduce__(self):
        return Msg, (self.template, self.params)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"msg({self.template!r}{args})"


def msg(template: str, /, **params: Any) -> Msg:
    """A translatable message: ``msg("work item %(id)s is already %(state)s", id=item.id, state=item.state)``.

    The template is the message id in the UI's catalogs (extracted with the keyword ``msg``), so it must be a
    string literal with named placeholders only.
    """
    return Msg(template, params)


def template_of(message: str) -> tuple[str, dict[str, Any]]:
    """(template, params) of a message: a plain string is its own template, without values."""
    if isinstance(message, Msg):
        return message.template, message.params
    return str(message), {}


class EngineError(Exception):
    """Base class; ``code`` is a stable machine-readable identifier.

    ``message`` is the English text (a :class:`Msg` when built with :func:`msg`);
    ``template`` and ``params`` are its untranslated form.  ``field_errors`` maps
    fields to their messages (strings or :class:`Msg`, English either way).
    """

    code = "engine_error"

    def __init__(self, message: str, *, field_errors: dict[str, list[str]] | None = None):
        super().__init__(str(message))
        self.message = message
        self.field_errors = field_errors or {}

    @property
    def template(self) -> str:
        return template_of(self.message)[0]

    @property
    def params(self) -> dict[str, Any]:
        return template_of(self.message)[1]


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
