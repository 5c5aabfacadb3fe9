"""The one settings module: every setting declared once, with its default.

Settings come from environment variables prefixed ``HUYING_``.  They are read
and validated at the entry points (CLI, WSGI app, scheduler) with
:func:`load_settings`; a bad value stops start-up with a message naming the
variable, never a stack trace deep inside the app.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
PREFIX = "HUYING_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _default_db_url() -> str:
    return f"sqlite:///{DEFAULT_INSTANCE_DIR / 'huying.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_db_url)
    clock: str = "wall"  # "wall" (Asia/Shanghai) or "virtual"
    secret_key: str = "dev-only-insecure-secret-key"
    timezone: str = "Asia/Shanghai"
    env: str = "development"  # "development" or "production"
    bpmn_dir: str = str(PROJECT_ROOT / "bpmn")
    demo_file: str = str(PROJECT_ROOT / "config" / "demo_district.json")
    sla_policy_file: str = str(PROJECT_ROOT / "config" / "sla_policy.json")
    calendar_file: str = str(PROJECT_ROOT / "config" / "calendar.json")
    office_hours: str = ""  # e.g. "09:00-12:00,14:00-18:00"; empty: the calendar file's, else that default
    scheduler_interval_seconds: float = 5.0
    log_level: str = "INFO"
    # HTTP API
    attachment_dir: str = str(DEFAULT_INSTANCE_DIR / "attachments")  # photos and evidence, outside the database
    max_upload_mb: float = 10.0  # per file
    token_ttl_hours: float = 12.0  # sign-in tokens expire
    ratelimit_storage: str = "memory://"  # flask-limiter storage; e.g. redis://127.0.0.1:6379 across workers
    ratelimit_signin: str = "10 per minute"  # attempts per account and address
    ratelimit_signin_ip: str = "30 per minute"  # failed attempts per address, whatever the account
    ratelimit_filing: str = "60 per minute"
    ratelimit_enabled: str = "true"
    # web UI
    ui_refresh_seconds: float = 15.0  # how often open queues, dashboards and call pages refresh themselves

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_CHOICES = {"clock": ("wall", "virtual"), "env": ("development", "production"),
            "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"), "ratelimit_enabled": ("true", "false")}


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build :class:`Settings` from ``HUYING_*`` variables plus explicit overrides.

    Raises :class:`SettingsError` with a clear message for unknown or bad values.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    known = {f.name for f in fields(Settings)}
    for key, raw in environ.items():
        if not key.startswith(PREFIX) or key.startswith("HUYING_TEST_"):
            continue
        name = key[len(PREFIX):].lower()
        if name not in known:
            raise SettingsError(f"{key} is not a Huying setting (known: "
                                f"{', '.join(sorted(PREFIX + k.upper() for k in known))})")
        values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, choices in _CHOICES.items():
        if name in values:
            values[name] = str(values[name]).strip()
            if name == "log_level":
                values[name] = str(values[name]).upper()
            if values[name] not in choices:
                raise SettingsError(f"{PREFIX}{name.upper()}={values[name]!r}: must be one of {', '.join(choices)}")
    for name in ("max_upload_mb", "token_ttl_hours", "ui_refresh_seconds"):
        if name in values:
            try:
                number = float(values[name])  # type: ignore[arg-type]
            except ValueError:
                raise SettingsError(f"{PREFIX}{name.upper()} must be a number") from None
            if number <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
            values[name] = number
    if "scheduler_interval_seconds" in values:
        try:
            interval = float(values["scheduler_interval_seconds"])  # type: ignore[arg-type]
        except ValueError:
            raise SettingsError(f"{PREFIX}SCHEDULER_INTERVAL_SECONDS must be a number of seconds") from None
        if not 0.1 <= interval <= 60:
            raise SettingsError(f"{PREFIX}SCHEDULER_INTERVAL_SECONDS must be between 0.1 and 60")
        values["scheduler_interval_seconds"] = interval
    url = str(values.get("database_url", "")).strip()
    if "database_url" in values:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise SettingsError(f"{PREFIX}DATABASE_URL={url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        values["database_url"] = url
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.env == "production" and settings.secret_key == Settings.secret_key:
        raise SettingsError(f"{PREFIX}SECRET_KEY must be set to a long random value in production")
    if len(settings.secret_key) < 16:
        raise SettingsError(f"{PREFIX}SECRET_KEY must be at least 16 characters")
    return settings
