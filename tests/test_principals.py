"""Users and their units are kept in memory between requests; every change reaches the next request."""
from __future__ import annotations

import pytest
from sqlalchemy import event, update

from engine.errors import NotFound
from workflows.admin import update_unit, update_user
from workflows.models import User
from workflows.org import get_user


class Statements:
    def __init__(self, engine):
        self.seen: list[str] = []
        self.engine = engine

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._note)
        return self.seen

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._note)

    def _note(self, _conn, _cursor, statement, *_args):
        self.seen.append(statement)


def _who(services, username):
    with services.session_factory() as s:
        user = get_user(s, username)
        chain, unit = [], user.unit
        while unit is not None:
            chain.append((unit.code, unit.name, unit.kind))
            unit = unit.parent
        return user.role, user.display_name, chain


def _admin(services, fn, *args):
    from workflows.context import ServiceContext

    with services.session_factory() as s:
        out = fn(ServiceContext(s, services.clock, get_user(s, "admin"), sla=services.sla), *args)
        s.commit()
        return out


def test_a_known_user_is_one_small_statement_with_the_same_answer(services):
    first = _who(services, "qingnian.grid")
    assert first[2] == [("qingnian", first[2][0][1], "community"), ("xiagang", first[2][1][1], "street"),
                        ("huangpu", first[2][2][1], "district")]
    with Statements(services.engine) as seen:
        again = _who(services, "qingnian.grid")
    assert again == first
    assert len(seen) == 1 and "org_unit" not in seen[0], seen  # no join, no lazy load of the parents


def test_an_admins_change_of_role_name_unit_or_unit_name_reaches_the_next_request(services):
    assert _who(services, "power.staff")[0] == "department_staff"
    _admin(services, update_user, "power.staff", {"display_name": "供电 新名"})
    assert _who(services, "power.staff")[1] == "供电 新名"
    _admin(services, update_unit, "power", {"name": "区供电局（新）"})
    assert _who(services, "power.staff")[2][0] == ("power", "区供电局（新）", "department")
    _admin(services, update_user, "qingnian.grid", {"unit": "puhui", "role": "community_staff"})
    role, _name, chain = _who(services, "qingnian.grid")
    assert role == "community_staff" and [c[0] for c in chain] == ["puhui", "xiagang", "huangpu"]
    _admin(services, update_user, "power.staff", {"active": False})
    with services.session_factory() as s, pytest.raises(NotFound):
        get_user(s, "power.staff")


def test_a_move_to_another_unit_changes_what_the_user_may_act_on(services, district):
    number = district.file(category="lift_install", direct_to_street=True)
    district.do(number, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": []})
    assert district.items(number, "power.staff")  # cached now, with the power unit
    _admin(services, update_user, "power.staff", {"unit": "telecom"})
    assert _who(services, "power.staff")[2][0][0] == "telecom"
    assert district.items(number, "power.staff") == []


def test_a_change_rolled_back_is_never_served(services):
    """A transaction that changes a user and reads them back must not leave its uncommitted view in the cache."""
    _who(services, "telecom.staff")
    with services.session_factory() as s:
        user = get_user(s, "telecom.staff")
        user.display_name = "never committed"
        s.flush()
        assert get_user(s, "telecom.staff").display_name == "never committed"
        s.rollback()
    assert _who(services, "telecom.staff")[1] != "never committed"
    _admin(services, update_user, "telecom.staff", {"display_name": "committed"})
    assert _who(services, "telecom.staff")[1] == "committed"


def test_a_change_by_another_process_is_seen(services):
    """Another process's change arrives only as rows and the revision it bumped: this process re-reads."""
    _who(services, "police.staff")
    with services.engine.begin() as conn:  # as another process would: its own connection, no shared memory
        conn.execute(update(User).where(User.username == "police.staff").values(display_name="另一进程改的"))
        from workflows.models import _bump_statement

        conn.execute(_bump_statement(conn.dialect.name))
    assert _who(services, "police.staff")[1] == "另一进程改的"


def test_over_http_a_signed_out_token_or_deactivated_user_is_refused_at_once(api):
    dispatcher, admin = api.as_("xiagang.dispatcher"), api.as_("admin")
    assert dispatcher.get("/api/v1/auth/me").get_json()["user"]["role"] == "street_dispatcher"
    assert dispatcher.get("/api/v1/auth/me").status_code == 200  # the second from the cache
    assert admin.patch("/api/v1/admin/users/xiagang.dispatcher", json={"display_name": "新调度"}).status_code == 200
    assert dispatcher.get("/api/v1/auth/me").get_json()["user"]["display_name"] == "新调度"
    assert dispatcher.delete("/api/v1/auth/tokens/current").status_code in (200, 204)
    assert dispatcher.get("/api/v1/auth/me").status_code == 401
    api.tokens.pop("xiagang.dispatcher")
    assert dispatcher.get("/api/v1/auth/me").status_code == 200  # signed in again
    assert admin.patch("/api/v1/admin/users/xiagang.dispatcher", json={"active": False}).status_code == 200
    assert dispatcher.get("/api/v1/auth/me").status_code == 401
