"""The service layer's messages in the page's language: every page shows errors through :func:`error_text`.

The engine and the workflows raise :class:`~engine.errors.EngineError` with
English messages built by :func:`engine.errors.msg`: a template with named
placeholders and its values.  Here the template is translated (its zh-CN
translation is in ``translations_errors``) and the values that are the
system's own words (a work item's state, a call's status, an action, a role,
a kind of unit, a task title, a department's code) are shown as the UI names
them.  A few field messages have the UI's own wording (:data:`UI_WORDING`);
plain strings (marshmallow's messages, messages of code that does not use
``msg`` yet) are matched against :data:`PLAIN` or looked up in the catalogs,
else shown as they are.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from flask import g
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.errors import EngineError, Msg

from .labels import action_label, status_label, task_label, unit_name

MIB = 1024 * 1024

# the system's words as they read inside a sentence ("… is already completed", "a grid worker belongs to …")
ITEM_STATE = {"open": _l("open"), "completed": _l("completed"), "cancelled": _l("cancelled")}
UNIT_KIND = {"district": _l("district"), "street": _l("street"), "community": _l("community"),
             "department": _l("department")}
ROLE = {"grid_worker": _l("grid worker"), "community_staff": _l("community staff"),
        "street_dispatcher": _l("street dispatcher"), "department_staff": _l("department staff"),
        "district_dispatcher": _l("district dispatcher"), "supervisor": _l("supervisor"),
        "admin": _l("administrator"), "hotline": _l("hotline operator")}


def _pick(table: Mapping) -> Callable[[object], str]:
    return lambda value: str(table[value]) if value in table else str(value)


def _unit(code) -> str:
    return unit_name(code) if "db" in g and isinstance(code, str) else str(code)


def _listed(one: Callable[[object], str]) -> Callable[[object], str]:
    """A value the service joined with ", " (a list of actions, of roles): each shown, joined the page's way."""
    return lambda value: _(", ").join(one(v) for v in str(value).split(", ")) if value else ""


# placeholder name -> how its value is shown; any other value is shown as it is
PARAMS: dict[str, Callable[[object], str]] = {
    "state": _pick(ITEM_STATE),
    "status": lambda value: status_label(value) or str(value),
    "action": lambda value: action_label(value) or str(value),
    "actions": _listed(lambda value: action_label(value) or str(value)),
    "role": _pick(ROLE),
    "roles": _listed(_pick(ROLE)),
    "kind": _pick(UNIT_KIND),
    "parent_kind": _pick(UNIT_KIND),
    "code_kind": _pick(UNIT_KIND),
    "title": lambda value: task_label(None, str(value)),
    "department": _unit,
    "community": _unit,
    "street": _unit,
    "district": _unit,
    "owner": _unit,
    "unit": _unit,
}


def param_text(name: str, value) -> str:
    if isinstance(value, Msg):  # a phrase of its own ("org unit 'x'")
        return message_text(value)
    if value is None:
        return ""
    render = PARAMS.get(name)
    return render(value) if render is not None else str(value)


# Field messages the UI words its own way (what to do rather than what went wrong): template -> text
UI_WORDING: dict[str, Callable[[dict], str]] = {
    "a caller cannot be satisfied with an unresolved call":
        lambda p: _("A caller cannot be satisfied when the problem is not resolved."),
    "each department once": lambda p: _("Name each department once: the lead cannot also assist."),
    "unknown department '%(code)s'": lambda p: _("Unknown department '%(code)s'.", code=p.get("code")),
    "required: the routing table suggests none for this category": lambda p: _("Choose a lead department."),
    "no such earlier call": lambda p: _("There is no such earlier call."),
    "merge only into a call of the same street": lambda p: _("You can merge only into a call of the same street."),
    "%(number)s is %(status)s; merge into an open call":
        lambda p: _("%(number)s is already %(status)s; merge into an open call.", number=p.get("number"),
                    status=param_text("status", p.get("status"))),
    "choose a different department": lambda p: _("Choose a different department."),
    "a date as YYYY-MM-DD between 2000 and 2100": lambda p: _("A date (YYYY-MM-DD) between 2000 and 2100."),
    "%(department)s already handles it":
        lambda p: _("%(unit)s already handles it and cannot also assist.", unit=_unit(p.get("department"))),
    "at most %(n)s files": lambda p: _("At most %(n)s files.", n=p.get("n")),
    "%(name)s: not an accepted file type (%(allowed)s)":
        lambda p: _("%(name)s: not an accepted file type (photos or PDF only).", name=p.get("name")),
    "%(name)s: the file is empty": lambda p: _("%(name)s: the file is empty.", name=p.get("name")),
    "%(name)s: %(size)s bytes; the limit is %(limit)s bytes":
        lambda p: _("%(name)s is too large (at most %(mb)s MB).", name=p.get("name"),
                    mb=int(p.get("limit") or 0) // MIB),
}

# Plain strings: marshmallow's own messages (and a validator message that marshmallow formats) -> text;
# ``is_list``: the field takes several values; ``empty``: nothing was entered
PLAIN: list[tuple[str, Callable[[re.Match, bool, bool], str]]] = [
    (r"Missing data for required field\.|Shorter than minimum length 1\.|Field may not be null\.",
     lambda m, is_list, empty: _("This field is required.")),
    (r"Length must be between (\d+) and (\d+)\.",
     lambda m, is_list, empty: _("This field is required.") if empty
     else _("Enter %(low)s to %(high)s characters.", low=m[1], high=m[2])),
    (r"Longer than maximum length (\d+)\.",
     lambda m, is_list, empty: _("Choose at most %(n)s.", n=m[1]) if is_list
     else _("Too long: at most %(n)s characters.", n=m[1])),
    (r"Must be greater than or equal to (-?\d+) and less than or equal to (-?\d+)\.",
     lambda m, is_list, empty: _("Enter a number from %(low)s to %(high)s.", low=m[1], high=m[2])),
    (r"Not a valid integer\.", lambda m, is_list, empty: _("Enter a whole number.")),
    (r"Not a valid boolean\.", lambda m, is_list, empty: _("Choose yes or no.")),
    (r"Must be one of: .*", lambda m, is_list, empty: _("Choose one of the options.")),
    (r"(\d+)-(\d+) characters",
     lambda m, is_list, empty: message_text(Msg("%(low)s-%(high)s characters", {"low": m[1], "high": m[2]}))),
]


def message_text(message, *, is_list: bool = False, empty: bool = False) -> str:
    """One message of the service (a :class:`Msg`, or a plain string) in the page's language."""
    if isinstance(message, Msg):
        wording = UI_WORDING.get(message.template)
        if wording is not None:
            return wording(message.params)
        try:
            return _(message.template) % {k: param_text(k, v) for k, v in message.params.items()}
        except (KeyError, TypeError, ValueError):  # a translation that lost a placeholder: the English
            return str(message)
    text = str(message)
    for pattern, render in PLAIN:
        m = re.fullmatch(pattern, text)
        if m:
            return render(m, is_list, empty)
    # a message without values that a catalog knows (or the string itself)
    return _(text) if text and "%" not in text else text


def error_text(error, *, is_list: bool = False, empty: bool = False) -> str:
    """An error of the service (an :class:`EngineError`, or one of its messages) in the page's language."""
    if isinstance(error, EngineError):
        return message_text(error.message)
    return message_text(error, is_list=is_list, empty=empty)


def field_texts(error: EngineError) -> dict[str, list[str]]:
    """An error's field messages in the page's language, by field (a list field's per-item messages merged)."""
    out = {}
    for key, messages in (error.field_errors or {}).items():
        if isinstance(messages, dict):  # {index: [messages]}
            messages = [m for sub in messages.values() for m in (sub if isinstance(sub, list) else [sub])]
        out[key] = [message_text(m) for m in (messages if isinstance(messages, list) else [messages])]
    return out
