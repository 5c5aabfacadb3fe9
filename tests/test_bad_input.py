"""Bad input gets a clear error and changes nothing."""
from __future__ import annotations

import pytest

from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed


@pytest.fixture
def filed(district):
    no = district.file("qingnian.grid", category="road_flooding")
    return no


def _unchanged(d, before, no=None, state=None):
    assert d.counts() == before
    if no is not None:
        assert d.state_of(no) == state


@pytest.mark.parametrize("data, field", [
    ({"category": "ufo_landing"}, "category"),
    ({"category": "road_flooding", "description": ""}, "description"),
    ({"category": "road_flooding", "urgency": "whenever"}, "urgency"),
    ({"category": "road_flooding", "latitude": 123.0}, "latitude"),
    ({"category": "road_flooding", "photos": ["p"] * 10}, "photos"),
    ({"category": "road_flooding", "colour": "red"}, "colour"),
])
def test_filing_with_bad_fields_is_refused_with_the_field_named(district, data, field):
    before = district.counts()
    with pytest.raises(ValidationFailed) as err:
        district.file("qingnian.grid", **data)
    assert field in err.value.field_errors
    _unchanged(district, before)


def test_filing_without_a_location_is_refused(district):
    before = district.counts()
    with pytest.raises(ValidationFailed) as err:
        with district.session() as s:
            from workflows.calls import file_call
            file_call(district.ctx(s, "qingnian.grid"), {"category": "road_flooding", "description": "x"})
    assert "location" in err.value.field_errors
    _unchanged(district, before)


@pytest.mark.parametrize("user", ["water.staff", "huangpu.supervisor", "huangpu.dispatcher", "admin"])
def test_roles_that_do_not_file_calls_cannot(district, user):
    before = district.counts()
    with pytest.raises(Forbidden):
        district.file(user, category="road_flooding")
    _unchanged(district, before)


def test_a_grid_worker_files_only_for_their_own_community(district):
    with pytest.raises(Forbidden):
        district.file("qingnian.grid", category="road_flooding", community="luofeng")


def test_a_street_files_only_for_its_own_communities(district):
    with pytest.raises(Forbidden):
        district.file("xiagang.dispatcher", category="road_flooding", community="luofeng")
    with pytest.raises(ValidationFailed):
        district.file("xiagang.dispatcher", category="road_flooding")
    no = district.file("xiagang.dispatcher", category="road_flooding", community="qingnian")
    assert district.open_tasks(no) == [("street_triage", "xiagang")]


@pytest.mark.parametrize("user", ["water.staff", "luogang.dispatcher", "qingnian.grid", "huangpu.supervisor",
                                  "huangpu.dispatcher", "admin"])
def test_only_the_owning_street_dispatcher_may_triage(district, filed, user):
    [item] = district.items(filed)
    before, state = district.counts(), district.state_of(filed)
    with pytest.raises(Forbidden):
        district.act(item.id, user, "dispatch", {"lead": "water"})
    _unchanged(district, before, filed, state)


def test_a_department_cannot_act_on_work_not_dispatched_to_it(district, filed):
    district.do(filed, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    [sign] = district.items(filed)
    before, state = district.counts(), district.state_of(filed)
    with pytest.raises(Forbidden):
        district.act(sign.id, "urban.staff", "sign")
    _unchanged(district, before, filed, state)


def test_doing_a_completed_item_again_is_a_conflict(district, filed):
    [item] = district.items(filed)
    district.act(item.id, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    before, state = district.counts(), district.state_of(filed)
    with pytest.raises(Conflict, match="already completed by xiagang.dispatcher"):
        district.act(item.id, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    _unchanged(district, before, filed, state)


@pytest.mark.parametrize("action, data, field", [
    ("dispatch", {"lead": "nowhere"}, "lead"),
    ("dispatch", {"lead": "water", "assists": ["water"]}, "assists"),
    ("dispatch", {"lead": "water", "assists": ["ghost"]}, "assists"),
    ("dispatch", {"lead": "water", "extra": 1}, "extra"),
    ("reject", {}, "action"),
    ("sign", {}, "action"),
    ("void", {}, "reason"),
])
def test_bad_action_or_data_is_refused_and_changes_nothing(district, filed, action, data, field):
    [item] = district.items(filed)
    before, state = district.counts(), district.state_of(filed)
    with pytest.raises(ValidationFailed) as err:
        district.act(item.id, "xiagang.dispatcher", action, data)
    assert field in err.value.field_errors
    _unchanged(district, before, filed, state)


def test_departments_have_no_reject_action(district, filed):
    district.do(filed, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    [sign] = district.items(filed, "water.staff")
    with pytest.raises(ValidationFailed, match="available: sign, dispute"):
        district.act(sign.id, "water.staff", "reject", {"reason": "不归我管"})


def test_other_category_without_a_lead_needs_one_named(district):
    no = district.file("qingnian.grid", category="other")
    with pytest.raises(ValidationFailed) as err:
        district.do(no, "xiagang.dispatcher", "dispatch", {})
    assert "lead" in err.value.field_errors


def test_unknown_items_and_users(district):
    with pytest.raises(NotFound):
        district.act(999999, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    with pytest.raises(NotFound):
        district.file("nobody", category="road_flooding")


def test_satisfied_but_unresolved_is_inconsistent(district, filed):
    d = district
    d.do(filed, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(filed, "water.staff", "sign")
    d.do(filed, "water.staff", "done", {"result": "ok"})
    d.do(filed, "qingnian.grid", "pass")
    with pytest.raises(ValidationFailed) as err:
        d.do(filed, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": False})
    assert "resolved" in err.value.field_errors
