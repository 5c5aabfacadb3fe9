"""Settings validation and the injectable clock (pure: no database)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from config.settings import SettingsError, load_settings
from engine.clock import SHANGHAI, VirtualClock, WallClock, parse_duration


def test_defaults_serve_embedded_sqlite_with_the_wall_clock():
    s = load_settings({})
    assert s.is_sqlite and s.database_url.endswith("instance/huying.sqlite3") and s.clock == "wall"


@pytest.mark.parametrize("env, message", [
    ({"HUYING_CLOCK": "sundial"}, "HUYING_CLOCK"),
    ({"HUYING_DATABASE_URL": "mysql://x"}, "HUYING_DATABASE_URL"),
    ({"HUYING_SCHEDULER_INTERVAL_SECONDS": "soon"}, "HUYING_SCHEDULER_INTERVAL_SECONDS"),
    ({"HUYING_SCHEDULER_INTERVAL_SECONDS": "3600"}, "between"),
    ({"HUYING_SECRET_KEY": "short"}, "HUYING_SECRET_KEY"),
    ({"HUYING_ENV": "production"}, "HUYING_SECRET_KEY must be set"),
    ({"HUYING_COLOUR": "red"}, "not a Huying setting"),
])
def test_bad_settings_are_refused_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_postgresql_urls_use_psycopg3():
    s = load_settings({"HUYING_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"})
    assert s.database_url == "postgresql+psycopg://postgres@127.0.0.1/test"


def test_wall_clock_is_in_shanghai():
    now = WallClock().now()
    assert now.utcoffset() == timedelta(hours=8)


def test_virtual_clock_moves_only_when_told_and_only_forward():
    clock = VirtualClock(datetime(2026, 9, 30, 17, 0))
    assert clock.now() == datetime(2026, 9, 30, 17, 0, tzinfo=SHANGHAI)
    clock.advance(timedelta(hours=2))
    assert clock.now().hour == 19
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 9, 1))
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


@pytest.mark.parametrize("text, expected", [
    ("90m", timedelta(minutes=90)), ("2h", timedelta(hours=2)), ("3d", timedelta(days=3)),
    ("1d2h30m", timedelta(days=1, hours=2, minutes=30)), ("PT2H", timedelta(hours=2)),
    ("P1DT1H", timedelta(days=1, hours=1)), ("45s", timedelta(seconds=45)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "", "2x", "PT", "h2"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
