"""Languages of the UI: zh-CN by default, en; catalogs compiled from the .po files on start."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import request, session

LANGUAGES = {"zh_CN": "中文", "en": "English"}
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


def select_locale() -> str:
    """?lang= (remembered in a cookie), else zh-CN: the district's language, whatever the browser says."""
    lang = request.args.get("lang") or request.cookies.get("lang") or session.get("lang")
    return lang if lang in LANGUAGES else "zh_CN"


def compile_catalogs(directory: Path) -> None:
    """Compile each messages.po to messages.mo when the .mo is missing or older (no build step needed)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in Path(directory).glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=po.parent.parent.name)
        # a temporary file of this process's own (several workers may start at once), renamed into
        # place atomically: a reader sees the old catalog or the new one, never half of one
        fd, tmp = tempfile.mkstemp(dir=mo.parent, prefix=".messages-", suffix=".mo.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write_mo(fh, catalog, use_fuzzy=False)
            os.replace(tmp, mo)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
