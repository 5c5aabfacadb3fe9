"""The composition root: settings -> database engine, session factory, clock."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import engine.models  # noqa: F401 - register tables
import workflows.models  # noqa: F401 - register tables
from config.settings import Settings, load_settings
from engine.clock import Clock, StoredVirtualClock, WallClock
from engine.db import make_engine, make_session_factory
from engine.sla import SlaKeeper
from workflows.sla import build_keeper


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker
    clock: Clock
    sla: SlaKeeper


def build_services(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    settings = settings or load_settings()
    db = make_engine(settings.database_url)
    factory = make_session_factory(db)
    if clock is None:
        clock = StoredVirtualClock(factory) if settings.clock == "virtual" else WallClock()
    return Services(settings, db, factory, clock, build_keeper(settings))


def upgrade_database(services: Services, revision: str = "head") -> None:
    """Apply the Alembic migrations (``huying db upgrade``)."""
    from alembic import command
    from alembic.config import Config

    from config.settings import PROJECT_ROOT

    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", services.settings.database_url.replace("%", "%%"))
    cfg.attributes["connection_engine"] = services.engine
    command.upgrade(cfg, revision)
