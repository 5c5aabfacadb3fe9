"""Every user-facing string of the UI is translated: each gettext message in web/ui (Python and
templates) has a zh-CN translation in one of the UI's catalogs, and each %(placeholder)s survives."""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web.ui import TRANSLATION_DIRS

WEB = Path(__file__).resolve().parent.parent / "web"
METHODS = [("app.py", "python"), ("ui/**.py", "python"), ("ui/**/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2), "_n": (1, 2)}


def _messages() -> dict[str, str]:
    found = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(str(WEB), method_map=METHODS,
                                                                           keywords=KEYWORDS):
        msgid = message[0] if isinstance(message, tuple) else message  # a plural: its singular id
        if msgid:
            found.setdefault(msgid, filename)
    return found


def _entries() -> list[tuple[str, str, str]]:
    """(catalog file, msgid, translation) of every zh-CN catalog; a plural's translation is its first form."""
    out = []
    for directory in TRANSLATION_DIRS:
        for po in Path(directory).glob("zh/LC_MESSAGES/*.po"):
            with po.open("rb") as fh:
                for message in read_po(fh):
                    if message.id:
                        msgid = message.id if isinstance(message.id, str) else message.id[0]
                        text = message.string if isinstance(message.string, str) else (message.string or ("",))[0]
                        out.append((str(po.relative_to(WEB)), msgid, text))
    return out


def _catalog() -> dict[str, str]:
    return {msgid: text for _where, msgid, text in _entries()}


def test_catalogs_agree_on_shared_messages():
    """The catalogs are merged (the last one wins): one message, one translation everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for where, msgid, text in _entries():
        if msgid in seen and text and seen[msgid][1] and seen[msgid][1] != text:
            clashes.append(f"{msgid!r}: {seen[msgid][1]!r} ({seen[msgid][0]}) vs {text!r} ({where})")
        seen.setdefault(msgid, (where, text))
    assert not clashes, "\n".join(clashes)


def test_every_ui_message_has_a_chinese_translation():
    messages, catalog = _messages(), _catalog()
    assert len(messages) > 20
    missing = sorted(f"{where}: {msgid!r}" for msgid, where in messages.items() if not catalog.get(msgid))
    assert not missing, "untranslated UI strings:\n" + "\n".join(missing)


def test_placeholders_survive_translation():
    catalog = _catalog()
    broken = [msgid for msgid, text in catalog.items() if isinstance(text, str) and text
              and sorted(re.findall(r"%\(\w+\)s", msgid)) != sorted(re.findall(r"%\(\w+\)s", text))]
    assert not broken, broken
