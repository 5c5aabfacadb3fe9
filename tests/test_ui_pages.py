"""Pages of the web UI through Flask's test client: what a signed-in user sees of their own calls."""
from __future__ import annotations

import re

from tests.test_ui_i18n import _signed_in, _text


def _words(response) -> str:
    """The page's text without its markup."""
    return " ".join(re.sub(r"<[^>]+>", " ", _text(response)).split())


def test_my_calls_lists_what_i_filed_by_tab_with_counts(app, district):
    kept = district.file("qingnian.grid", category="road_flooding", description="积水一")
    voided = district.file("qingnian.grid", category="road_flooding", description="积水二")
    district.do(voided, "xiagang.dispatcher", "void", {"reason": "重复上报"})
    district.file("qingnian.staff", category="road_flooding", description="别人上报的")  # not mine
    client, _csrf = _signed_in(app, "qingnian.grid")

    page = _words(client.get("/calls/mine?lang=en"))
    assert kept in page and voided not in page
    assert "Not finished (1)" in page and "Finished (1)" in page and "All (2)" in page
    finished = _words(client.get("/calls/mine?show=finished&lang=en"))
    assert voided in finished and kept not in finished
    everything = _words(client.get("/calls/mine?show=all&lang=en"))
    assert kept in everything and voided in everything
    assert _words(client.get("/calls/mine?show=nonsense&lang=en")) == page  # an unknown tab is the default one
