"""Domain tables: the org tree, users, categories and calls (tickets)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.db import Base, UTCDateTime

UNIT_KINDS = ("district", "street", "community", "department")
ROLES = ("grid_worker", "community_staff", "street_dispatcher", "department_staff", "district_dispatcher",
         "supervisor", "admin")
# Which unit kind each role belongs to.
ROLE_UNIT_KIND = {"grid_worker": "community", "community_staff": "community", "street_dispatcher": "street",
                  "department_staff": "department", "district_dispatcher": "district",
                  "supervisor": "district", "admin": "district"}
URGENCIES = ("normal", "urgent")


class OrgUnit(Base):
    __tablename__ = "org_unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id], lazy="joined", join_depth=2)


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    unit: Mapped[OrgUnit] = relationship(lazy="joined")


class Category(Base):
    __tablename__ = "category"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Call(Base):
    """A citizen call (呼叫, the ticket).  Its process state lives in the engine instance."""

    __tablename__ = "call"
    __table_args__ = (
        Index("ix_call_street_status", "street_code", "status", "created_at"),
        Index("ix_call_community_status", "community_code", "status"),
        Index("ix_call_category_created", "category_code", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("category.code"))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    urgency: Mapped[str] = mapped_column(String(16))
    photos: Mapped[list] = mapped_column(JSON, default=list)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    community_code: Mapped[str] = mapped_column(String(64))
    street_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    level: Mapped[str] = mapped_column(String(16))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("engine_process_instance.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"), index=True)
    department_code: Mapped[str | None] = mapped_column(String(64))  # child tickets: the department
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"))
    handling_level: Mapped[str] = mapped_column(String(16), default="street")  # routing's first level
    suggested_lead: Mapped[str | None] = mapped_column(String(64))
    suggested_assists: Mapped[list] = mapped_column(JSON, default=list)
    sla_class: Mapped[str] = mapped_column(String(16), default="standard")
    problem_ticket: Mapped[bool] = mapped_column(Boolean, default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[str | None] = mapped_column(String(32))
    first_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    reporter: Mapped[User] = relationship()
    category: Mapped[Category] = relationship()
    parent: Mapped[Call | None] = relationship(remote_side=[id], foreign_keys=[parent_id])
    merged_into: Mapped[Call | None] = relationship(remote_side=[id], foreign_keys=[merged_into_id])
