"""The demo district (config/demo_district.json): org tree, one user per role per unit, categories.

Loaded by ``huying demo load`` and by ``make run`` when the database is empty.
Every demo user's password is ``huying-demo``; usernames are ``<unit code>.<role>``
(e.g. ``qingnian.grid``, ``xiagang.dispatcher``, ``water.staff``) plus
``huangpu.dispatcher``, ``huangpu.supervisor``, ``huangpu.hotline`` (12345 hotline and Open311
intake: files calls for any community) and ``admin``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.definitions import DeployResult, deploy, read_files
from engine.sla import deploy_policy

from .models import Category, OrgUnit, User
from .passwords import hash_password

DEMO_PASSWORD = "huying-demo"
ROLE_SUFFIX = {"grid_worker": "grid", "community_staff": "staff", "street_dispatcher": "dispatcher",
               "department_staff": "staff", "district_dispatcher": "dispatcher", "supervisor": "supervisor", "hotline": "hotline"}
ROLE_LABEL = {"grid_worker": "网格员", "community_staff": "社区工作人员", "street_dispatcher": "街镇指挥中心调度员",
              "department_staff": "部门办理员", "district_dispatcher": "区指挥中心调度员", "supervisor": "督查员",
              "hotline": "12345热线接入"}
UNIT_ROLES = {"community": ("grid_worker", "community_staff"), "street": ("street_dispatcher",),
              "department": ("department_staff",), "district": ("district_dispatcher", "supervisor", "hotline")}


@dataclass
class DemoSummary:
    units: int
    users: int
    categories: int
    deployed: list[str]


def database_is_empty(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(OrgUnit)) or 0) == 0


def load_demo(session: Session, demo_file: str, bpmn_dir: str, *, at: datetime,
              sla_policy_file: str | None = None) -> DemoSummary:
    """Create the demo district.  Raises ValueError if the database already has an org tree."""
    if not database_is_empty(session):
        raise ValueError("the database already has an org tree; the demo loads into an empty database only")
    spec = json.loads(Path(demo_file).read_text(encoding="utf-8"))
    password_hash = hash_password(DEMO_PASSWORD)  # one hash: all demo users share the password
    units: list[OrgUnit] = []

    def unit(code, name, name_en, kind, parent=None):
        u = OrgUnit(code=code, name=name, name_en=name_en, kind=kind, parent=parent)
        session.add(u)
        units.append(u)
        return u

    d = spec["district"]
    district = unit(d["code"], d["name"], d.get("name_en", ""), "district")
    for s in spec["streets"]:
        street = unit(s["code"], s["name"], s.get("name_en", ""), "street", district)
        for c in s["communities"]:
            unit(c["code"], c["name"], c.get("name_en", ""), "community", street)
    for dep in spec["departments"]:
        unit(dep["code"], dep["name"], dep.get("name_en", ""), "department", district)
    session.flush()
    users = 0
    for u in units:
        for role in UNIT_ROLES[u.kind]:
            session.add(User(username=f"{u.code}.{ROLE_SUFFIX[role]}", display_name=f"{u.name}{ROLE_LABEL[role]}",
                             password_hash=password_hash, role=role, unit=u))
            users += 1
    session.add(User(username="admin", display_name="系统管理员", password_hash=password_hash, role="admin",
                     unit=district))
    users += 1
    for c in spec["categories"]:
        session.add(Category(code=c["code"], name=c["name"], name_en=c.get("name_en", "")))
    session.flush()
    bundle = read_files(sorted(str(p) for p in Path(bpmn_dir).glob("*.bpmn"))
                        + sorted(str(p) for p in Path(bpmn_dir).glob("*.dmn")))
    deployed = deploy(session, bundle, at=at, actor="demo", note="demo district")
    policy_file = Path(sla_policy_file) if sla_policy_file else Path(demo_file).with_name("sla_policy.json")
    policy = deploy_policy(session, json.loads(policy_file.read_text(encoding="utf-8")), at=at, actor="demo",
                           note="demo district defaults (domain.md §3)")
    deployed.append(DeployResult("sla_policy", policy.version, policy.id, True))
    return DemoSummary(len(units), users, len(spec["categories"]), [f"{r.process_id} v{r.version}" for r in deployed])
