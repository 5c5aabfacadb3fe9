"""Every user-facing string of the UI is translated: each gettext message in web/ui (Python and
templates) has a zh-CN translation in one of the UI's catalogs, and each %(placeholder)s survives.
So does every message of the service layer (``msg("…")`` in engine/ and workflows/), which the UI
shows in the page's language while the API and the CLI keep the English."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
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


# ---- the service layer's messages (engine/, workflows/: msg("…")) --------------------------------------

ROOT = WEB.parent
SERVICE_DIRS = ("engine", "workflows")


def _service_templates() -> dict[str, str]:
    """Every msg("…") template of the engine and the workflows -> where it is."""
    found = {}
    for d in SERVICE_DIRS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
                str(ROOT / d), method_map=[("**.py", "python")], keywords={"msg": None}):
            if message:
                found.setdefault(message, f"{d}/{filename}:{lineno}")
    return found


def test_every_service_message_has_a_chinese_translation_with_its_placeholders():
    """A service message added without a zh-CN translation (or with a placeholder lost) fails here."""
    templates, catalog = _service_templates(), _catalog()
    assert len(templates) > 50  # extraction works (about 120 today)
    missing = sorted(f"{where}: {t!r}" for t, where in templates.items() if not catalog.get(t))
    assert not missing, "untranslated service messages (add them to web/ui/translations_errors):\n" + "\n".join(missing)
    broken = sorted(f"{where}: {t!r} -> {catalog[t]!r}" for t, where in templates.items()
                    if sorted(re.findall(r"%\(\w+\)s", t)) != sorted(re.findall(r"%\(\w+\)s", catalog[t])))
    assert not broken, "\n".join(broken)


def test_msg_calls_are_literal_templates_with_named_values():
    """msg()'s template is a string literal (else it cannot be extracted) and its values are exactly its
    placeholders; any other %-format in a template would break the translation."""
    import ast

    problems = []
    for d in SERVICE_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "msg"):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)) or len(node.args) != 1:
                    problems.append(f"{where}: the template must be the only positional argument, a literal")
                    continue
                names = set(re.findall(r"%\((\w+)\)s", first.value))
                if re.sub(r"%\(\w+\)s|%%", "", first.value).count("%"):
                    problems.append(f"{where}: only %(name)s placeholders: {first.value!r}")
                given = {k.arg for k in node.keywords}
                if None not in given and given != names:
                    problems.append(f"{where}: values {sorted(given)} != placeholders {sorted(names)}")
    assert not problems, "\n".join(problems)


def test_catalogs_compile_and_merge_the_service_messages(app):
    """The UI loads the service catalog: a template renders in zh-CN with its values in the UI's words."""
    from flask import g

    from engine.errors import Conflict, msg
    from web.ui.errors import error_text

    exc = Conflict(msg("work item %(id)s (%(title)s) is already %(state)s by %(by)s", id=7,
                       title="签收 Sign for", state="completed", by="water.staff"))
    assert exc.message == "work item 7 (签收 Sign for) is already completed by water.staff"  # the API's, unchanged
    assert exc.template.startswith("work item %(id)s") and exc.params["state"] == "completed"
    with app.test_request_context("/"):
        g.db = app.extensions["huying"].session_factory()
        try:
            assert error_text(exc) == "待办事项 7（签收）已由 water.staff 办理完毕"
            assert error_text("a plain message stays as it is") == "a plain message stays as it is"
        finally:
            g.db.close()
    with app.test_request_context("/?lang=en"):
        g.db = app.extensions["huying"].session_factory()
        try:
            assert error_text(exc) == "work item 7 (Sign for) is already completed by water.staff"
        finally:
            g.db.close()


# ---- through the UI: a service error in the page's language -------------------------------------------

def _signed_in(app, username: str):
    from workflows.demo import DEMO_PASSWORD

    client = app.test_client()
    r = client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 302, r.get_data(as_text=True)
    with client.session_transaction() as session:
        csrf = session["csrf"]
    return client, csrf


def _text(response) -> str:
    """The page as the reader sees it (entities decoded, whitespace collapsed)."""
    import html

    return " ".join(html.unescape(response.get_data(as_text=True)).split())


@pytest.mark.parametrize("lang, expected", [
    ("", "未做任何更改：已有人先处理了该事项，或流程已推进（待办事项 %(id)s（街镇研判）已由 xiagang.dispatcher "
         "办理完毕）。"),
    ("en", "Nothing was changed: someone acted on this item first, or it has moved on (work item %(id)s "
           "(Street triage) is already completed by xiagang.dispatcher)."),
])
def test_acting_on_an_item_someone_already_completed_says_so_in_the_page_language(app, district, lang, expected):
    number = district.file("qingnian.grid", category="road_flooding")
    [item] = district.items(number)
    client, csrf = _signed_in(app, "xiagang.dispatcher")
    query = f"?lang={lang}" if lang else ""
    assert client.get(f"/work/{item.id}{query}").status_code == 200  # the page is open in one tab ...
    district.act(item.id, "xiagang.dispatcher", "dispatch", {"lead": "water"})  # ... the work is done in another
    r = client.post(f"/work/{item.id}/dispatch{query}", data={"csrf_token": csrf, "lead": "water"},
                    follow_redirects=True)
    assert r.status_code == 200
    assert expected % {"id": item.id} in _text(r)
    # the API keeps the English message integrators read
    token = app.test_client().post("/api/v1/auth/tokens", json={"username": "xiagang.dispatcher",
                                                               "password": "huying-demo"}).get_json()["token"]
    api = app.test_client().post(f"/api/v1/work/{item.id}/actions/dispatch", json={"lead": "water"},
                                 headers={"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"})
    assert api.status_code == 409
    assert api.get_json()["message"].startswith(f"work item {item.id} (") \
        and api.get_json()["message"].endswith("is already completed by xiagang.dispatcher")


@pytest.mark.parametrize("lang, role_error, unit_error", [
    ("", "网格员应属于社区，而“power”是部门", "组织单位“nowhere”不存在或已停用"),
    ("en", "a grid worker belongs to a community; 'power' is a department",
     "unknown or inactive org unit 'nowhere'"),
])
def test_an_admin_form_shows_the_service_field_errors_in_the_page_language(app, lang, role_error, unit_error):
    client, csrf = _signed_in(app, "admin")
    query = f"?lang={lang}" if lang else ""
    form = {"csrf_token": csrf, "username": "power.grid", "display_name": "供电网格员", "role": "grid_worker",
            "password": "long-enough-password"}
    r = client.post(f"/admin/users/new{query}", data={**form, "unit": "power"})
    assert r.status_code == 422
    assert role_error in _text(r)
    r = client.post(f"/admin/users/new{query}", data={**form, "unit": "nowhere"})
    assert r.status_code == 422
    assert unit_error in _text(r)


def test_catalogs_compile_safely_when_several_workers_start_at_once(tmp_path):
    """Every gunicorn or test worker compiles missing .mo files on start; at once, none may fail."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from babel.messages.mofile import read_mo

    from web.ui.i18n import compile_catalogs

    for directory in TRANSLATION_DIRS:
        shutil.copytree(directory, tmp_path / Path(directory).name, ignore=shutil.ignore_patterns("*.mo"))
    for _round in range(5):
        for mo in tmp_path.glob("*/*/LC_MESSAGES/*.mo"):
            mo.unlink()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(compile_catalogs, [tmp_path / Path(d).name for d in TRANSLATION_DIRS] * 8))
    mos = sorted(tmp_path.glob("*/*/LC_MESSAGES/*.mo"))
    assert len(mos) == len(list(tmp_path.glob("*/*/LC_MESSAGES/*.po"))) >= 5
    for mo in mos:
        with mo.open("rb") as fh:
            assert len(read_mo(fh)) > 5
    assert not list(tmp_path.glob("**/*.tmp"))
