"""Lifecycle benchmark: one scenario-1 call, filed and closed through the service layer.

Measured unit (one ticket, 10 actions, each its own session + commit, as a request would be):

    file (qingnian.grid, lift_install, direct_to_street)            1
    street_triage dispatch (xiagang.dispatcher, lead power,
                            assists telecom + police)                1
    sign x3 (power.staff, telecom.staff, police.staff)               3
    done x3 (same departments, {"result": ...})                      3
    verify pass (qingnian.grid)                                      1
    feedback rate (xiagang.dispatcher, satisfied + resolved)         1  -> call 'closed'

Also measures the raw SpiffWorkflow cost of the same lifecycle (no database):
A without serialization, B with dump_state/load_state around every step.

Run:  python bench/lifecycle.py [--backend sqlite|postgresql|both] [--processes 1,2]
      [--tickets 20] [--rounds 5] [--warmup 20]      (defaults shown: under 3 minutes on 2 CPUs)
      python bench/lifecycle.py --tickets 200        (the long run: ~20 minutes)
Results: a table on stdout and bench/results/lifecycle-<backend>.json.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue as queue_module
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from benchlib import PG_ADMIN_URL, cpu_model  # noqa: E402

PG_DB = "huying_bench"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"

COMMUNITY, STREET, DISTRICT = "qingnian", "xiagang", "huangpu"
LEAD, ASSISTS = "power", ["telecom", "police"]
DEPARTMENTS = [LEAD, *ASSISTS]
FILE_DATA = {"category": "lift_install", "description": "电缆阻碍加装电梯，需迁移电力、通信线路",
             "location": "东园二街1号", "direct_to_street": True}
RESULT = {"result": "线路已迁移，现场已清理"}
RATE = {"satisfaction": "satisfied", "resolved": True}
# Kinds in lifecycle order; a ticket has one file, dispatch, pass, rate and three sign and done.
KINDS = ("file", "dispatch", "sign", "done", "pass", "rate")
ACTIONS_PER_TICKET = 10


# ---- databases ----------------------------------------------------------------------------------

def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def fresh_database(backend: str, tmpdir: str, tag: str) -> str:
    """Create an empty database, the schema and the demo district; returns its URL."""
    if backend == "sqlite":
        path = Path(tmpdir) / f"bench-{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        url = PG_URL

    import engine.models  # noqa: F401 - registers the tables
    import workflows.models  # noqa: F401
    from engine.clock import VirtualClock
    from engine.db import Base, make_engine, make_session_factory
    from workflows.demo import load_demo

    eng = make_engine(url)
    try:
        Base.metadata.create_all(eng)
        with make_session_factory(eng)() as session:
            load_demo(session, str(ROOT / "config/demo_district.json"), str(ROOT / "bpmn"), at=VirtualClock().now())
            session.commit()
    finally:
        eng.dispose()
    return url


def drop_pg() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


# ---- the service-layer loop (runs in a worker process) -----------------------------------------

class Recorder:
    """Per-action latency, SQL statements and commits, by action kind."""

    def __init__(self, eng, cold: bool = False):
        from sqlalchemy import event

        # --cold-cache: forget the runtime's restored workflows before every action, as if each
        # request landed on a worker process that did not handle the instance's previous step.
        self.workflow_cache = None
        if cold:
            import engine.runtime

            self.workflow_cache = getattr(engine.runtime, "WORKFLOW_CACHE", None)

        self.statements = 0
        self.commits = 0
        self.sql_seconds = 0.0  # time inside cursor.execute (statement round trips)
        self.commit_seconds = 0.0  # time inside session.commit() (the flush is done by then)
        self._t0 = 0.0
        self.reset()
        event.listen(eng, "before_cursor_execute", self._on_execute)
        event.listen(eng, "after_cursor_execute", self._after_execute)
        event.listen(eng, "commit", self._on_commit)

    def reset(self):
        """Forget what was recorded so far (after the warm-up)."""
        self.latency = {k: [] for k in KINDS}
        self.stmts = {k: 0 for k in KINDS}
        self.commit_count = {k: 0 for k in KINDS}
        self.count = {k: 0 for k in KINDS}
        self.sql_ms = {k: 0.0 for k in KINDS}
        self.commit_ms = {k: 0.0 for k in KINDS}
        self.retries = 0
        self.retry_errors: list[str] = []

    def _on_execute(self, *_args):
        self.statements += 1
        self._t0 = time.perf_counter()

    def _after_execute(self, *_args):
        self.sql_seconds += time.perf_counter() - self._t0

    def commit(self, session):
        t0 = time.perf_counter()
        session.commit()
        self.commit_seconds += time.perf_counter() - t0

    def _on_commit(self, *_args):
        self.commits += 1

    def timed(self, kind, fn):
        """Run ``fn`` (one request: session, service call, commit); retry on a locked database."""
        from sqlalchemy.exc import OperationalError

        s0, c0, q0, k0 = self.statements, self.commits, self.sql_seconds, self.commit_seconds
        t0 = time.perf_counter()
        for attempt in range(20):
            if self.workflow_cache is not None:
                self.workflow_cache.clear()
            try:
                result = fn()
                break
            except OperationalError as exc:  # SQLite "database is locked" under two writers
                if attempt == 19:
                    raise
                self.retries += 1
                if len(self.retry_errors) < 5:
                    self.retry_errors.append(str(exc.orig)[:200])
                time.sleep(0.001)
        self.latency[kind].append(time.perf_counter() - t0)
        self.stmts[kind] += self.statements - s0
        self.commit_count[kind] += self.commits - c0
        self.sql_ms[kind] += (self.sql_seconds - q0) * 1e3
        self.commit_ms[kind] += (self.commit_seconds - k0) * 1e3
        self.count[kind] += 1
        return result


def one_ticket(session_factory, clock, rec: Recorder) -> None:
    from sqlalchemy import select

    from engine.models import WorkItem
    from workflows.calls import act_on_work_item, file_call
    from workflows.context import ServiceContext
    from workflows.org import get_user

    def file():
        with session_factory() as s:
            call = file_call(ServiceContext(s, clock, get_user(s, f"{COMMUNITY}.grid")), FILE_DATA)
            # file_call returns the call, not the opened items: one indexed SELECT in the same
            # transaction (counted in the "file" figures) instead of my_work().
            items = s.scalars(select(WorkItem).where(WorkItem.instance_id == call.instance_id,
                                                     WorkItem.state == "open")).all()
            rec.commit(s)
            return call.number, [(w.id, w.task_name, w.owner_unit) for w in items]

    def act(username, item_id, action, data):
        def run():
            with session_factory() as s:
                out = act_on_work_item(ServiceContext(s, clock, get_user(s, username)), item_id, action, data)
                opened = [(w.id, w.task_name, w.owner_unit) for w in out.opened]
                status = out.call.status
                rec.commit(s)
                return opened, status
        return run

    number, items = rec.timed("file", file)
    assert [t for _, t, _ in items] == ["street_triage"], (number, items)
    opened, _ = rec.timed("dispatch", act(f"{STREET}.dispatcher", items[0][0], "dispatch",
                                          {"lead": LEAD, "assists": ASSISTS}))
    signs = {owner: wid for wid, task, owner in opened if task == "sign"}
    assert sorted(signs) == sorted(DEPARTMENTS), (number, opened)
    resolves = {}
    for dep in DEPARTMENTS:
        opened, _ = rec.timed("sign", act(f"{dep}.staff", signs[dep], "sign", {}))
        assert [(t, o) for _, t, o in opened] == [("resolve", dep)], (number, opened)
        resolves[dep] = opened[0][0]
    for dep in DEPARTMENTS:
        opened, _ = rec.timed("done", act(f"{dep}.staff", resolves[dep], "done", RESULT))
    assert [t for _, t, _ in opened] == ["verify"], (number, opened)
    opened, _ = rec.timed("pass", act(f"{COMMUNITY}.grid", opened[0][0], "pass", {}))
    assert [t for _, t, _ in opened] == ["feedback"], (number, opened)
    opened, status = rec.timed("rate", act(f"{STREET}.dispatcher", opened[0][0], "rate", RATE))
    assert status == "closed" and not opened, (number, status, opened)


def worker(wid: int, url: str, tickets: int, rounds: int, warmup: int, cold: bool, barrier, queue) -> None:
    try:
        import engine.models  # noqa: F401
        import workflows.models  # noqa: F401
        from engine.clock import VirtualClock
        from engine.db import make_engine, make_session_factory

        eng = make_engine(url)
        session_factory = make_session_factory(eng)
        clock = VirtualClock()
        rec = Recorder(eng, cold=cold)
        for _ in range(warmup):
            one_ticket(session_factory, clock, rec)
        warm_retries = rec.retries
        rec.reset()
        spans = []
        for _ in range(rounds):
            if barrier is not None:
                barrier.wait()
            t0, c0 = time.monotonic(), time.process_time()
            for _ in range(tickets):
                one_ticket(session_factory, clock, rec)
            spans.append((t0, time.monotonic(), time.process_time() - c0))
        eng.dispose()
        queue.put({"wid": wid, "ok": True, "spans": spans, "latency": rec.latency, "stmts": rec.stmts,
                   "commits": rec.commit_count, "count": rec.count,
                   "sql_ms": rec.sql_ms, "commit_ms": rec.commit_ms, "retries": rec.retries,
                   "warmup_retries": warm_retries, "retry_errors": rec.retry_errors})
    except BaseException:  # noqa: BLE001 - report, don't hang the parent
        queue.put({"wid": wid, "ok": False, "error": traceback.format_exc()})
        if barrier is not None:
            barrier.abort()


def run_service(url: str, processes: int, tickets: int, rounds: int, warmup: int, cold: bool = False) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(processes) if processes > 1 else None
    procs = [ctx.Process(target=worker, args=(i, url, tickets, rounds, warmup, cold, barrier, queue))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except queue_module.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                raise RuntimeError(f"a worker died (exit code {dead[0].exitcode}) without reporting") from None
    for p in procs:
        p.join()
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise RuntimeError("worker failed:\n" + "\n".join(r["error"] for r in failed))
    per_round = []
    for i in range(rounds):
        start = min(r["spans"][i][0] for r in results)
        end = max(r["spans"][i][1] for r in results)
        elapsed = end - start
        n = tickets * processes
        per_round.append({"seconds": elapsed, "tickets": n, "tickets_per_s": n / elapsed,
                          "actions_per_s": n * ACTIONS_PER_TICKET / elapsed,
                          "per_process_actions_per_s": [tickets * ACTIONS_PER_TICKET / (r["spans"][i][1]
                                                        - r["spans"][i][0]) for r in results],
                          # CPU seconds the worker process itself used / its wall seconds (1.0 = never waited)
                          "worker_cpu_share": [r["spans"][i][2] / (r["spans"][i][1] - r["spans"][i][0])
                                               for r in results]})
    lat_all = [x for r in results for k in KINDS for x in r["latency"][k]]
    by_kind = {}
    for k in KINDS:
        lat = [x for r in results for x in r["latency"][k]]
        count = sum(r["count"][k] for r in results)
        by_kind[k] = {"count": count, "p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3,
                      "mean_ms": statistics.fmean(lat) * 1e3,
                      "sql_per_action": sum(r["stmts"][k] for r in results) / count,
                      "commits_per_action": sum(r["commits"][k] for r in results) / count,
                      "sql_ms_per_action": sum(r["sql_ms"][k] for r in results) / count,
                      "commit_ms_per_action": sum(r["commit_ms"][k] for r in results) / count}
    n_actions = len(lat_all)
    return {
        "processes": processes, "cold_workflow_cache": cold, "tickets_per_round_per_process": tickets,
        "rounds": rounds, "warmup": warmup,
        "actions_per_ticket": ACTIONS_PER_TICKET, "per_round": per_round,
        "median_tickets_per_s": statistics.median(r["tickets_per_s"] for r in per_round),
        "median_actions_per_s": statistics.median(r["actions_per_s"] for r in per_round),
        "median_worker_cpu_share": statistics.median(x for r in per_round for x in r["worker_cpu_share"]),
        "latency_ms": {"p50": pct(lat_all, 50) * 1e3, "p95": pct(lat_all, 95) * 1e3,
                       "p99": pct(lat_all, 99) * 1e3, "max": max(lat_all) * 1e3},
        "sql_per_action": sum(sum(r["stmts"].values()) for r in results) / n_actions,
        "commits_per_action": sum(sum(r["commits"].values()) for r in results) / n_actions,
        "sql_ms_per_action": sum(sum(r["sql_ms"].values()) for r in results) / n_actions,
        "commit_ms_per_action": sum(sum(r["commit_ms"].values()) for r in results) / n_actions,
        "mean_ms_per_action": statistics.fmean(lat_all) * 1e3,
        "by_kind": by_kind,
        "lock_retries": sum(r["retries"] for r in results),
        "warmup_lock_retries": sum(r["warmup_retries"] for r in results),
        "retry_errors": [e for r in results for e in r["retry_errors"]][:5],
    }


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---- raw SpiffWorkflow ------------------------------------------------------------------------

def run_raw(tickets: int, rounds: int, warmup: int) -> dict:
    from SpiffWorkflow.util.task import TaskState

    from engine.definitions import parse_bundle, read_files
    from engine.runtime import _lookup
    from engine.spiff import dump_state, load_state

    parsed = parse_bundle(read_files([str(ROOT / "bpmn/call_dispatch.bpmn"),
                                      str(ROOT / "bpmn/routing.dmn")]))["call_dispatch"]
    slots = [{"department": LEAD, "role": "lead"}] + [{"department": d, "role": "assist"} for d in ASSISTS]
    steps = ([("street_triage", None, {"decision": "dispatch", "slots": slots})]
             + [("sign", d, {}) for d in DEPARTMENTS]
             + [("resolve", d, {"action": "done"}) for d in DEPARTMENTS]
             + [("verify", None, {"passed": True}),
                ("feedback", None, {"satisfaction": "satisfied", "resolved": True})])
    assert len(steps) + 1 == ACTIONS_PER_TICKET

    def find(workflow, name, dep):
        for task in workflow.get_tasks(state=TaskState.READY, manual=True):
            if task.task_spec.bpmn_id == name and (dep is None or _lookup(task.data, "slot.department") == dep):
                return task
        raise AssertionError(f"no ready {name} {dep}")

    def ticket(i: int, serialize: bool) -> None:
        workflow = parsed.new_workflow({
            "call": f"HY20261012{i:06d}", "category": FILE_DATA["category"], "urgency": "normal",
            "community": COMMUNITY, "street": STREET, "district": DISTRICT, "direct_to_street": True,
            "level": "street", "problem_ticket": False, "reopen_count": 0, "rework_count": 0, "rework": False,
            "reassign_count": 0})
        workflow.do_engine_steps()
        blob = dump_state(workflow) if serialize else None
        for name, dep, data in steps:
            if serialize:
                workflow = load_state(blob, parsed)
            task = find(workflow, name, dep)
            task.data.update(data)
            task.run()
            workflow.do_engine_steps()
            if serialize:
                blob = dump_state(workflow)
        assert workflow.completed

    out = {}
    for variant, serialize in (("A_no_serialization", False), ("B_dump_load_each_step", True)):
        for i in range(warmup):
            ticket(i, serialize)
        per_round = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(tickets):
                ticket(i, serialize)
            elapsed = time.perf_counter() - t0
            per_round.append({"seconds": elapsed, "ms_per_ticket": elapsed / tickets * 1e3,
                              "actions_per_s": tickets * ACTIONS_PER_TICKET / elapsed})
        out[variant] = {"tickets_per_round": tickets, "rounds": rounds, "per_round": per_round,
                        "median_ms_per_ticket": statistics.median(r["ms_per_ticket"] for r in per_round),
                        "median_actions_per_s": statistics.median(r["actions_per_s"] for r in per_round)}
    return out


# ---- reporting --------------------------------------------------------------------------------

def machine() -> dict:
    import SpiffWorkflow
    import sqlalchemy

    info = {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "sqlalchemy": sqlalchemy.__version__,
            "spiffworkflow": getattr(SpiffWorkflow, "__version__", "?")}
    try:
        from importlib.metadata import version

        info["spiffworkflow"] = version("SpiffWorkflow")
    except Exception:  # noqa: BLE001
        pass
    return info


def source_state() -> dict:
    """The commit measured, and whether engine/, workflows/ or bpmn/ had uncommitted changes."""
    import subprocess

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    changed = git("status", "--porcelain", "--", "engine", "workflows", "bpmn", "config")
    return {"commit": git("rev-parse", "HEAD").strip() or None,
            "uncommitted_changes": [line[3:] for line in changed.splitlines() if line.strip()]}


def print_service(backend: str, res: dict) -> None:
    p = res["processes"]
    print(f"\n== service layer, {backend}, {p} process{'es' if p > 1 else ''}"
          + (", cold workflow cache" if res["cold_workflow_cache"] else "") + " "
          f"({res['tickets_per_round_per_process']} tickets x {res['rounds']} rounds per process, "
          f"{ACTIONS_PER_TICKET} actions/ticket)")
    print(f"  {'round':>5} {'seconds':>8} {'tickets/s':>10} {'actions/s':>10}"
          + ("   per-process actions/s" if p > 1 else ""))
    for i, r in enumerate(res["per_round"], 1):
        extra = "   " + " / ".join(f"{x:.0f}" for x in r["per_process_actions_per_s"]) if p > 1 else ""
        print(f"  {i:>5} {r['seconds']:>8.2f} {r['tickets_per_s']:>10.1f} {r['actions_per_s']:>10.1f}{extra}")
    print(f"  {'MEDIAN':>5} {'':>8} {res['median_tickets_per_s']:>10.1f} {res['median_actions_per_s']:>10.1f}"
          f"   (worker CPU busy {res['median_worker_cpu_share']:.0%} of wall time)")
    lat = res["latency_ms"]
    print(f"  latency ms (all actions): p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}  "
          f"max {lat['max']:.1f};  SQL statements/action {res['sql_per_action']:.2f};  "
          f"commits/action {res['commits_per_action']:.2f}")
    print(f"  mean ms/action {res['mean_ms_per_action']:.2f} = SQL execute {res['sql_ms_per_action']:.2f} + "
          f"commit {res['commit_ms_per_action']:.2f} + the rest (Python: ORM, SpiffWorkflow, (de)serialization) "
          f"{res['mean_ms_per_action'] - res['sql_ms_per_action'] - res['commit_ms_per_action']:.2f}")
    print(f"  {'action':<9} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'SQL/action':>10} "
          f"{'commits':>8} {'SQL ms':>7} {'commit ms':>9}")
    for k, v in res["by_kind"].items():
        print(f"  {k:<9} {v['count']:>6} {v['p50_ms']:>8.2f} {v['p95_ms']:>8.2f} {v['mean_ms']:>8.2f} "
              f"{v['sql_per_action']:>10.1f} {v['commits_per_action']:>8.2f} {v['sql_ms_per_action']:>7.2f} "
              f"{v['commit_ms_per_action']:>9.2f}")
    print("  ('file' includes the benchmark's own SELECT of the opened work item: 1 statement)")
    if res["lock_retries"] or res["warmup_lock_retries"]:
        print(f"  lock retries: {res['lock_retries']} (warm-up {res['warmup_lock_retries']}); "
              f"e.g. {res['retry_errors'][:1]}")


def print_raw(raw: dict) -> None:
    print("\n== raw SpiffWorkflow, same lifecycle, no database")
    print(f"  {'variant':<24} {'ms/ticket':>10} {'actions/s':>10}   (median of rounds)")
    for name, v in raw.items():
        print(f"  {name:<24} {v['median_ms_per_ticket']:>10.2f} {v['median_actions_per_s']:>10.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--processes", default="1,2",
                    help="comma-separated process counts to run (each on a fresh database), e.g. 1 or 2 or 1,2")
    ap.add_argument("--tickets", type=int, default=20,
                    help="tickets per round per process (20 keeps the default run under ~3 minutes on 2 CPUs; "
                         "use 100 or 200 for a long run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=20, help="warm-up tickets per process (and per raw variant)")
    ap.add_argument("--raw-tickets", type=int, default=None,
                    help="tickets per round for the raw SpiffWorkflow runs (default: --tickets)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw SpiffWorkflow runs")
    ap.add_argument("--cold-cache", action="store_true",
                    help="clear the runtime's cache of restored workflows before every action (every step then "
                         "restores the state from the database, as on a worker that did not run the last step)")
    ap.add_argument("--out", default=str(ROOT / "bench/results"), help="directory for the JSON results")
    args = ap.parse_args(argv)
    procs = sorted({int(x) for x in args.processes.split(",") if x.strip()})
    if not procs or min(procs) < 1:
        ap.error("--processes needs positive integers")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not pg_available():
        print("PostgreSQL does not answer at 127.0.0.1:5432; skipping it", file=sys.stderr)
        if args.backend == "postgresql":
            return 1
        backends.remove("postgresql")

    info = machine()
    source = source_state()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}; Python {info['python']}, "
          f"SQLAlchemy {info['sqlalchemy']}, SpiffWorkflow {info['spiffworkflow']}; "
          f"load average {os.getloadavg()[0]:.2f} (anything else running skews the figures)")
    print(f"source: {(source['commit'] or '?')[:10]}"
          + (f" + uncommitted changes in {', '.join(source['uncommitted_changes'])}"
             if source["uncommitted_changes"] else ""))
    started = time.monotonic()
    raw = None
    if not args.no_raw:
        raw = run_raw(args.raw_tickets or args.tickets, args.rounds, args.warmup)
        print_raw(raw)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="huying-bench-") as tmp:
        for backend in backends:
            runs = {}
            try:
                for p in procs:
                    url = fresh_database(backend, tmp, f"p{p}")
                    runs[p] = run_service(url, p, args.tickets, args.rounds, args.warmup, args.cold_cache)
                    print_service(backend, runs[p])
            finally:
                if backend == "postgresql":
                    drop_pg()
            summary = {"median_actions_per_s": {str(p): r["median_actions_per_s"] for p, r in runs.items()},
                       "median_tickets_per_s": {str(p): r["median_tickets_per_s"] for p, r in runs.items()}}
            if 1 in runs:
                base = runs[1]["median_actions_per_s"]
                summary["scaling_vs_1_process"] = {str(p): r["median_actions_per_s"] / base for p, r in runs.items()}
                if raw:
                    ms_service = 1e3 * ACTIONS_PER_TICKET / base
                    summary["service_ms_per_ticket_1_process"] = ms_service
                    summary["service_vs_raw"] = {k: ms_service / v["median_ms_per_ticket"] for k, v in raw.items()}
            print(f"\n== {backend} summary")
            for p, r in runs.items():
                line = f"  {p} process{'es' if p > 1 else '  '}: {r['median_actions_per_s']:8.1f} actions/s " \
                       f"{r['median_tickets_per_s']:7.1f} tickets/s"
                if "scaling_vs_1_process" in summary and p != 1:
                    line += f"  ({summary['scaling_vs_1_process'][str(p)]:.2f}x one process)"
                print(line)
            if "service_vs_raw" in summary:
                print(f"  service layer {summary['service_ms_per_ticket_1_process']:.1f} ms/ticket = "
                      + ", ".join(f"{v:.1f}x raw {k.split('_', 1)[0]}" for k, v in summary["service_vs_raw"].items()))
            result = {"benchmark": "lifecycle", "backend": backend, "machine": info, "source": source,
                      "loadavg_at_end": os.getloadavg(),
                      "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "args": vars(args), "actions_per_ticket": ACTIONS_PER_TICKET,
                      "summary": summary, "service": {str(p): r for p, r in runs.items()}, "raw_spiff": raw}
            path = out_dir / f"lifecycle-{backend}{'-cold' if args.cold_cache else ''}.json"
            path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"  -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
