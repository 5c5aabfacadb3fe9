"""What the benchmarks share: log lines, percentiles, the local PostgreSQL, the machine's description."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values, p: float):
    """The p-th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def fmt(v, nd=1) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def pg_admin(sql: str) -> None:
    """One statement on the server's maintenance database, outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def postgres_info(settings: list[str]) -> dict:
    """The server's version and the given settings, or why they could not be read."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL) as conn:
            return {"postgresql": conn.execute("SHOW server_version").fetchone()[0],
                    "pg_settings": dict(conn.execute(
                        "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                        (settings,)).fetchall())}
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"postgresql": f"unavailable: {exc}"}


def code_version(root: Path, code_dirs: tuple[str, ...]) -> dict:
    """The git commit, the last commit that touched the measured code, and its uncommitted changes."""
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True).stdout.strip()

    try:
        return {"git_head": git("rev-parse", "--short", "HEAD"),
                "git_code_commit": git("log", "-1", "--format=%h", "--", *code_dirs),
                "git_dirty": [ln[3:] for ln in git("status", "--porcelain", "--", *code_dirs).splitlines()]}
    except OSError:
        return {}


CODE_DIRS = ("engine", "workflows", "web", "config", "migrations", "bpmn")
PG_SETTINGS = ["shared_buffers", "work_mem", "synchronous_commit", "fsync", "autovacuum", "jit", "max_connections",
               "random_page_cost", "effective_cache_size"]


def machine(root: Path, packages: tuple[str, ...]) -> dict:
    """CPUs, versions, PostgreSQL and its settings, the load, and the code measured."""
    from importlib.metadata import PackageNotFoundError, version

    info = {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg": os.getloadavg()}
    info.update(postgres_info(PG_SETTINGS))
    for pkg in packages:
        try:
            info[pkg.lower()] = version(pkg)
        except PackageNotFoundError:
            info[pkg.lower()] = None
    info.update(code_version(root, CODE_DIRS))
    return info


_SHOWN = {"gunicorn": "gunicorn", "sqlalchemy": "SQLAlchemy", "spiffworkflow": "SpiffWorkflow"}


def machine_line(m: dict) -> str:
    versions = "".join(f"; {label} {m[key]}" for key, label in _SHOWN.items() if m.get(key))
    return (f"machine: {m['nproc']} CPUs, {m['cpu_model']}; PostgreSQL {m.get('postgresql')}; "
            f"Python {m['python']}{versions}; load avg {', '.join(f'{x:.2f}' for x in m['loadavg'])}; "
            f"git {m.get('git_head', '?')} (code: {m.get('git_code_commit', '?')})"
            f"{' + local changes in ' + ', '.join(m['git_dirty']) if m.get('git_dirty') else ''}")
