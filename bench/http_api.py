"""HTTP-level benchmark: the production server (gunicorn + PostgreSQL) under concurrent API clients.

Parts, on one fresh database ``huying_bench_http`` (created and dropped here; no other database is
touched), served by ``gunicorn -w 2 web.wsgi:app`` (HUYING_ENV=production, rate limits off):

  tickets     C concurrent clients (threads, one keep-alive http.client connection each, tokens signed
              in once) run tickets end to end through /api/v1:
                five-step   road_flooding: file -> look up the triage item -> dispatch (water) -> sign
                            -> done -> verify pass -> rate => closed                     (7 requests)
                scenario-1  lift_install: file -> look up -> dispatch (power + telecom, police) -> 3 sign
                            -> 3 done -> pass -> rate => closed                          (11 requests)
              tickets/s per round (median of rounds), per-request p50/p95 latency by action, CPU
              per ticket of the gunicorn workers, the PostgreSQL backends and the clients.
                                                           target: >= 25 five-step tickets/s
  sql         one instrumented in-process pass (Flask test client, same database, same code): SQL
              statements, commits and repeated statements per request, and a cProfile of the requests
              (where the time goes: auth lookup, ORM, SpiffWorkflow, JSON).
  queue       1,000,000 open work items (calls, instances, SLA clocks; set-based SQL) spread over the
              demo district's departments, streets, communities and district; then the work queue
              ``GET /api/v1/work?per_page=20`` (and page 2) of a department clerk (the busiest and a
              median department), a street dispatcher and community staff: p50/p99, sequentially and
              with C concurrent clients, and the EXPLAIN ANALYZE of its queries.  target: p99 <= 20 ms

Run:  python bench/http_api.py                           (all parts at the issue's sizes, ~7 min on 2 CPUs)
      python bench/http_api.py --skip-queue              (tickets and sql only, ~3 min)
      python bench/http_api.py --queue-items 100000      (a quicker queue part)
      python bench/http_api.py --tickets 80 --rounds 5   (more tickets per round)
Results: a table on stdout and bench/results/http.json.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

# (not named http.py: run as a script, this folder comes first on sys.path and such a file would
# shadow the standard library's ``http`` package for every benchmark here)
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import benchlib  # noqa: E402
from benchlib import (  # noqa: E402
    PG_ADMIN_URL,
    fmt,
    log,
    machine_line,
    pct,
    pg_admin,
)

PG_DB = "huying_bench_http"  # the only database this benchmark creates, uses and drops
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"
PG_PLAIN = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
PASSWORD = "huying-demo"

COMMUNITY, STREET = "qingnian", "xiagang"
FILER, DISPATCHER = f"{COMMUNITY}.grid", f"{STREET}.dispatcher"
SCENARIOS = {
    # name: (filing body, lead, assists)
    "five-step": ({"category": "road_flooding", "description": "道路积水，车辆无法通行", "location": "港前路"},
                  "water", []),
    "scenario-1": ({"category": "lift_install", "description": "电缆阻碍加装电梯，需迁移电力、通信线路",
                    "location": "东园二街1号", "direct_to_street": True}, "power", ["telecom", "police"]),
}
RESULT = {"result": "已处理完毕，现场已清理"}
RATE = {"satisfaction": "satisfied", "resolved": True}
KINDS = ("file", "lookup", "dispatch", "sign", "done", "pass", "rate")
LOOKUP_TEXT = {"filed": "the filing's response", "call": "GET /api/v1/calls/{number}", "queue": "the queue"}


def requests_per_ticket(scenario: str, lookup: str = "filed") -> int:
    _body, _lead, assists = SCENARIOS[scenario]
    n = 1 + len(assists)
    lookups = 0 if lookup == "filed" else 1  # "filed": the triage item comes with the filing's response
    return 1 + lookups + 1 + 2 * n + 2  # file, (lookup), dispatch, sign and done per department, pass, rate


def users_of(scenario: str) -> list[str]:
    _body, lead, assists = SCENARIOS[scenario]
    return [FILER, DISPATCHER] + [f"{d}.staff" for d in [lead, *assists]]


# ---- helpers -------------------------------------------------------------------------------------

def drop_database() -> None:
    pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def machine() -> dict:
    return benchlib.machine(ROOT, ("gunicorn", "flask", "flask-smorest", "marshmallow", "sqlalchemy", "SpiffWorkflow", "psycopg"))


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pg_backend_pids() -> list[int]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (PG_DB,))]


class CpuMeter:
    """CPU seconds used between start() and stop() by: gunicorn workers, our PostgreSQL backends,
    this process (the clients), and the whole machine (the rest is anything else running)."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def snapshot(self) -> dict:
        workers = children_of(self.server_pid)
        backends = pg_backend_pids()
        busy, total = machine_cpu()
        return {"workers": {p: proc_cpu(p) for p in workers}, "master": proc_cpu(self.server_pid),
                "backends": {p: proc_cpu(p) for p in backends}, "client": time.process_time(),
                "busy": busy, "total": total, "wall": time.monotonic()}

    @staticmethod
    def delta(a: dict, b: dict) -> dict:
        def sum_delta(key):  # processes present at the end; new ones count from 0
            return sum(v - a[key].get(p, 0.0) for p, v in b[key].items())
        d = {"wall_s": b["wall"] - a["wall"], "gunicorn_workers_s": sum_delta("workers") + b["master"] - a["master"],
             "postgres_backends_s": sum_delta("backends"), "clients_s": b["client"] - a["client"],
             "machine_busy_s": b["busy"] - a["busy"], "machine_total_s": b["total"] - a["total"]}
        d["other_s"] = d["machine_busy_s"] - d["gunicorn_workers_s"] - d["postgres_backends_s"] - d["clients_s"]
        return d


# ---- the database and the server -----------------------------------------------------------------

def server_env(args) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUYING_")}
    env.update({"HUYING_DATABASE_URL": PG_URL, "HUYING_CLOCK": args.clock, "HUYING_RATELIMIT_ENABLED": "false",
                "HUYING_ENV": "production", "HUYING_SECRET_KEY": secrets.token_urlsafe(32),
                "HUYING_LOG_LEVEL": "WARNING", "HUYING_ATTACHMENT_DIR": str(ROOT / "instance" / "bench-http")})
    return env


def prepare_database(env: dict) -> None:
    """Fresh database: the migrations (``huying db upgrade``) and the demo district (``huying demo load``)."""
    drop_database()
    pg_admin(f"CREATE DATABASE {PG_DB}")
    for argv in (["db", "upgrade"], ["demo", "load"]):
        r = subprocess.run([str(BIN / "huying"), *argv], env=env, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"huying {' '.join(argv)} failed:\n{r.stdout}\n{r.stderr}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``gunicorn -w N web.wsgi:app`` on 127.0.0.1:port; its log goes to bench/results/http-gunicorn.log."""

    def __init__(self, env: dict, port: int, workers: int, extra: list[str]):
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_path = RESULTS / "http-gunicorn.log"
        self.argv = [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "120",
                     *extra, "web.wsgi:app"]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(workers)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, workers: int) -> None:
        port = self.port
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}); see {self.log_path}")
            probe = Client(port)
            try:
                status, _ = probe.get("/api/v1/health")
                if status == 200 and len(children_of(self.proc.pid)) >= workers:
                    break
            except (OSError, HttpError):
                pass
            finally:
                probe.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within 60 s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- the HTTP client -----------------------------------------------------------------------------

class HttpError(RuntimeError):
    pass


class Client:
    """One keep-alive connection (http.client), JSON in and out; reconnects when the server closes it
    (gunicorn's default sync workers answer every request with ``Connection: close``)."""

    def __init__(self, port: int):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.connects = 0  # new TCP connections
        self.retries = 0  # a kept-alive connection the server had closed in the meantime

    def request(self, method: str, path: str, body=None, token: str | None = None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(2):
            try:
                if self.conn.sock is None:
                    self.connects += 1
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                break
            except (ConnectionError, OSError) as exc:  # a kept-alive connection the server had closed
                fresh = self.conn.sock is None
                self.conn.close()
                if attempt == 1 or fresh:
                    raise HttpError(f"{method} {path}: {exc}") from exc
                self.retries += 1
        return resp.status, (json.loads(raw) if raw else None)

    def get(self, path, token=None):
        return self.request("GET", path, None, token)

    def post(self, path, body, token=None):
        return self.request("POST", path, body, token)

    def close(self):
        self.conn.close()


def sign_in(client: Client, username: str) -> str:
    status, body = client.post("/api/v1/auth/tokens", {"username": username, "password": PASSWORD,
                                                       "client": "bench/http_api.py"})
    if status != 201:
        raise HttpError(f"sign-in of {username}: {status} {body}")
    return body["token"]


class Runner:
    """One benchmark client: its connection, its tokens, its latencies by action kind."""

    def __init__(self, port: int, usernames: list[str], lookup: str):
        self.client = Client(port)
        self.tokens = {u: sign_in(self.client, u) for u in usernames}
        self.lookup_mode = lookup
        self.latency: dict[str, list[float]] = {k: [] for k in KINDS}
        self.requests = 0
        self.tickets: list[str] = []

    def reset(self):
        self.latency = {k: [] for k in KINDS}
        self.requests = 0
        self.tickets = []
        self.client.connects = self.client.retries = 0

    def call(self, kind, method, path, user, body=None, expect=200):
        t0 = time.perf_counter()
        status, out = self.client.request(method, path, body, self.tokens[user])
        self.latency[kind].append(time.perf_counter() - t0)
        self.requests += 1
        if status != expect:
            raise HttpError(f"{kind}: {method} {path} as {user}: {status} {out}")
        return out

    def act(self, kind, item_id, action, user, body):
        return self.call(kind, "POST", f"/api/v1/work/{item_id}/actions/{action}", user, body)

    def find_triage(self, number: str, filed: dict) -> int:
        if self.lookup_mode == "filed":  # POST /calls answers with the call's open work items
            items = [i for i in filed["open_items"] if i["task"] == "street_triage"]
        elif self.lookup_mode == "call":
            out = self.call("lookup", "GET", f"/api/v1/calls/{number}", DISPATCHER)
            items = [i for i in out["open_items"] if i["task"] == "street_triage"]
        else:  # the dispatcher's queue, first page: the new triage item is due soonest
            out = self.call("lookup", "GET", "/api/v1/work?per_page=20", DISPATCHER)
            items = [e["item"] for e in out["items"] if e["call"]["number"] == number
                     and e["item"]["task"] == "street_triage"]
        if len(items) != 1:
            raise HttpError(f"{number}: expected one street_triage item, found {items}")
        return items[0]["id"]

    def ticket(self, scenario: str) -> str:
        body, lead, assists = SCENARIOS[scenario]
        departments = [lead, *assists]
        out = self.call("file", "POST", "/api/v1/calls", FILER, body, expect=201)
        number = out["number"]
        triage = self.find_triage(number, out)
        out = self.act("dispatch", triage, "dispatch", DISPATCHER, {"lead": lead, "assists": assists})
        signs = {i["owner_unit"]: i["id"] for i in out["opened"] if i["task"] == "sign"}
        if sorted(signs) != sorted(departments):
            raise HttpError(f"{number}: dispatch opened {out['opened']}")
        resolves = {}
        for dep in departments:
            out = self.act("sign", signs[dep], "sign", f"{dep}.staff", {})
            opened = [(i["task"], i["owner_unit"], i["id"]) for i in out["opened"]]
            if [(t, o) for t, o, _ in opened] != [("resolve", dep)]:
                raise HttpError(f"{number}: sign by {dep} opened {opened}")
            resolves[dep] = opened[0][2]
        for dep in departments:
            out = self.act("done", resolves[dep], "done", f"{dep}.staff", RESULT)
        verify = [i for i in out["opened"] if i["task"] == "verify"]
        if len(verify) != 1:
            raise HttpError(f"{number}: the last done opened {out['opened']}")
        out = self.act("pass", verify[0]["id"], "pass", FILER, {})
        feedback = [i for i in out["opened"] if i["task"] == "feedback"]
        if len(feedback) != 1:
            raise HttpError(f"{number}: pass opened {out['opened']}")
        out = self.act("rate", feedback[0]["id"], "rate", DISPATCHER, RATE)
        if out["call"]["status"] != "closed" or out["opened"]:
            raise HttpError(f"{number}: after rate the call is {out['call']['status']}, opened {out['opened']}")
        self.tickets.append(number)
        return number


def run_tickets(port: int, server: Server, scenario: str, clients: int, tickets: int, rounds: int,
                warmup: int, lookup: str) -> dict:
    """``clients`` threads; each round every client runs tickets/clients tickets, rounds start together."""
    per_client = [tickets // clients + (1 if i < tickets % clients else 0) for i in range(clients)]
    runners = [Runner(port, users_of(scenario), lookup) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    spans: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    meter = CpuMeter(server.proc.pid)
    cpu: list[dict] = []

    def work(i: int):
        r = runners[i]
        try:
            for _ in range(max(1, warmup // clients)):
                r.ticket(scenario)
            r.reset()
            for _ in range(rounds):
                barrier.wait()
                t0 = time.monotonic()
                for _ in range(per_client[i]):
                    r.ticket(scenario)
                spans[i].append((t0, time.monotonic()))
                barrier.wait()
        except BaseException:  # noqa: BLE001 - report, don't hang the others
            errors.append(traceback.format_exc())
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        for _ in range(rounds):
            barrier.wait()  # the clients are warm (first round) or done with the previous round
            before = meter.snapshot()
            barrier.wait()  # the round is over
            cpu.append(CpuMeter.delta(before, meter.snapshot()))
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    for r in runners:
        r.client.close()
    if errors:
        raise RuntimeError("a client failed:\n" + errors[0])
    per_round = []
    rpt = requests_per_ticket(scenario, lookup)
    for k in range(rounds):
        start = min(s[k][0] for s in spans)
        end = max(s[k][1] for s in spans)
        c = cpu[k]
        n = sum(per_client)
        per_round.append({"seconds": end - start, "tickets": n, "tickets_per_s": n / (end - start),
                          "requests_per_s": n * rpt / (end - start),
                          "cpu_ms_per_ticket": {k2.removesuffix("_s"): v / n * 1e3 for k2, v in c.items()
                                                if k2.endswith("_s") and k2 != "wall_s"},
                          "machine_busy_share": c["machine_busy_s"] / max(c["machine_total_s"], 1e-9)})
    all_lat = [x for r in runners for k in KINDS for x in r.latency[k]]
    by_kind = {}
    for k in KINDS:
        lat = [x for r in runners for x in r.latency[k]]
        if lat:
            by_kind[k] = {"count": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3,
                          "p99_ms": pct(lat, 99) * 1e3, "mean_ms": statistics.fmean(lat) * 1e3}
    closed = [n for r in runners for n in r.tickets]
    med = statistics.median(r["tickets_per_s"] for r in per_round)
    cpu_keys = per_round[0]["cpu_ms_per_ticket"].keys()
    server_cpu_ms = statistics.median(r["cpu_ms_per_ticket"]["gunicorn_workers"] + r["cpu_ms_per_ticket"]
                                      ["postgres_backends"] for r in per_round)
    return {"scenario": scenario, "clients": clients, "tickets_per_round": sum(per_client), "rounds": rounds,
            "warmup_tickets": max(1, warmup // clients) * clients, "lookup": lookup,
            "requests_per_ticket": rpt, "per_round": per_round, "median_tickets_per_s": med,
            "median_requests_per_s": med * rpt,
            "median_cpu_ms_per_ticket": {k: statistics.median(r["cpu_ms_per_ticket"][k] for r in per_round)
                                         for k in cpu_keys},
            "median_machine_busy_share": statistics.median(r["machine_busy_share"] for r in per_round),
            # what the server side's CPU cost alone would allow if it had every CPU to itself
            "cpu_ceiling_tickets_per_s": (os.cpu_count() or 1) * 1e3 / max(server_cpu_ms, 1e-9),
            "latency_ms": {"p50": pct(all_lat, 50) * 1e3, "p95": pct(all_lat, 95) * 1e3,
                           "p99": pct(all_lat, 99) * 1e3, "max": max(all_lat) * 1e3},
            "by_kind": by_kind, "tickets_closed": len(closed), "all_closed": len(closed) == rounds * sum(per_client),
            "connects_per_request": sum(r.client.connects for r in runners)
            / max(1, sum(len(v) for r in runners for v in r.latency.values())),
            "stale_connection_retries": sum(r.client.retries for r in runners)}


def print_tickets(res: dict) -> None:
    print()
    print(f"== tickets over HTTP: {res['scenario']} ({res['requests_per_ticket']} requests/ticket, lookup via "
          f"{LOOKUP_TEXT[res['lookup']]}), {res['clients']} clients, "
          f"{res['tickets_per_round']} tickets x {res['rounds']} rounds ==")
    print(f"  {'round':>6} {'seconds':>8} {'tickets/s':>10} {'requests/s':>11}   CPU ms/ticket: gunicorn / "
          f"postgres / clients / other   machine busy")
    for i, r in enumerate(res["per_round"], 1):
        c = r["cpu_ms_per_ticket"]
        print(f"  {i:>6} {r['seconds']:>8.2f} {r['tickets_per_s']:>10.2f} {r['requests_per_s']:>11.1f}   "
              f"{c['gunicorn_workers']:8.1f} / {c['postgres_backends']:6.1f} / {c['clients']:5.1f} / "
              f"{c['other']:6.1f}   {r['machine_busy_share']:.0%}")
    c = res["median_cpu_ms_per_ticket"]
    print(f"  {'MEDIAN':>6} {'':>8} {res['median_tickets_per_s']:>10.2f} {res['median_requests_per_s']:>11.1f}   "
          f"{c['gunicorn_workers']:8.1f} / {c['postgres_backends']:6.1f} / {c['clients']:5.1f} / "
          f"{c['other']:6.1f}   {res['median_machine_busy_share']:.0%}")
    lat = res["latency_ms"]
    print(f"  latency ms, all requests: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
          f"max {lat['max']:.1f};  new TCP connections per request {res['connects_per_request']:.2f}")
    print(f"  {'request':<10} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for k, v in res["by_kind"].items():
        print(f"  {k:<10} {v['count']:>6} {v['p50_ms']:>8.1f} {v['p95_ms']:>8.1f} {v['p99_ms']:>8.1f} "
              f"{v['mean_ms']:>8.1f}")
    print(f"  every ticket closed: {'yes' if res['all_closed'] else 'NO'} ({res['tickets_closed']} tickets);  "
          f"CPU-bound ceiling on {os.cpu_count()} idle CPUs: {res['cpu_ceiling_tickets_per_s']:.1f} tickets/s "
          f"(= CPUs / (gunicorn + postgres CPU per ticket))")


# ---- the instrumented in-process pass: SQL per request, profile -------------------------------------

class SqlRecorder:
    def __init__(self, eng):
        from sqlalchemy import event

        self.statements: list[tuple[str, str]] = []
        self.commits = 0
        self.sql_seconds = 0.0
        self._t0 = 0.0
        event.listen(eng, "before_cursor_execute", self._before)
        event.listen(eng, "after_cursor_execute", self._after)
        event.listen(eng, "commit", self._commit)

    def _before(self, _conn, _cursor, statement, parameters, _context, _many):
        self.statements.append((statement, parameters))
        self._t0 = time.perf_counter()

    def _after(self, *_args):
        self.sql_seconds += time.perf_counter() - self._t0

    def _commit(self, *_args):
        self.commits += 1

    def take(self) -> tuple[list[tuple[str, str]], int, float]:
        out = self.statements, self.commits, self.sql_seconds
        self.statements, self.commits, self.sql_seconds = [], 0, 0.0
        return out


def statement_label(sql: str) -> str:
    """'SELECT app_user', 'UPDATE engine_work_item', ... : the verb and the first table."""
    import re

    s = " ".join(sql.split())
    verb = s.split(" ", 1)[0].upper()
    m = {"SELECT": re.search(r"\bFROM (\w+)", s), "INSERT": re.search(r"INTO (\w+)", s),
         "UPDATE": re.search(r"UPDATE (\w+)", s), "DELETE": re.search(r"FROM (\w+)", s)}.get(verb)
    return f"{verb} {m.group(1)}" if m else s[:40]


class InProcess:
    """The same Flask app and database in this process, driven by Flask's test client."""

    def __init__(self, env: dict):
        from config.settings import load_settings
        from web.app import create_app

        settings = load_settings({k: v for k, v in env.items() if k.startswith("HUYING_")})
        self.app = create_app(settings)
        self.services = self.app.extensions["huying"]
        self.rec = SqlRecorder(self.services.engine)
        self.client = self.app.test_client()
        self.tokens: dict[str, str] = {}
        self.log: list[dict] = []  # one entry per request
        self.profile = None
        self.cold = False

    def token(self, user):
        if user not in self.tokens:
            r = self.client.post("/api/v1/auth/tokens", json={"username": user, "password": PASSWORD})
            assert r.status_code == 201, r.get_json()
            self.tokens[user] = r.get_json()["token"]
        return self.tokens[user]

    def request(self, kind, method, path, user, body=None, expect=200):
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        if self.cold:
            import engine.runtime

            engine.runtime.WORKFLOW_CACHE.clear()
        self.rec.take()
        t0, c0 = time.perf_counter(), time.process_time()
        if self.profile is not None:
            self.profile.enable()
        r = self.client.open(path, method=method, headers=headers, json=body)
        if self.profile is not None:
            self.profile.disable()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        stmts, commits, sql_s = self.rec.take()
        out = r.get_json()
        assert r.status_code == expect, (kind, path, r.status_code, out)
        self.log.append({"kind": kind, "ms": elapsed * 1e3, "cpu_ms": cpu * 1e3, "statements": [s for s, _p in stmts],
                         "params": [repr(p) for _s, p in stmts], "param_objects": [p for _s, p in stmts],
                         "commits": commits, "sql_ms": sql_s * 1e3})
        return out

    def ticket(self, scenario: str, lookup: str = "filed") -> None:
        body, lead, assists = SCENARIOS[scenario]
        departments = [lead, *assists]
        filed = self.request("file", "POST", "/api/v1/calls", FILER, body, expect=201)
        number = filed["number"]
        if lookup == "filed":
            triage = next(i["id"] for i in filed["open_items"] if i["task"] == "street_triage")
        elif lookup == "call":
            out = self.request("lookup", "GET", f"/api/v1/calls/{number}", DISPATCHER)
            triage = next(i["id"] for i in out["open_items"] if i["task"] == "street_triage")
        else:
            out = self.request("lookup", "GET", "/api/v1/work?per_page=20", DISPATCHER)
            triage = next(e["item"]["id"] for e in out["items"] if e["call"]["number"] == number)
        out = self.request("dispatch", "POST", f"/api/v1/work/{triage}/actions/dispatch", DISPATCHER,
                           {"lead": lead, "assists": assists})
        signs = {i["owner_unit"]: i["id"] for i in out["opened"]}
        resolves = {}
        for dep in departments:
            out = self.request("sign", "POST", f"/api/v1/work/{signs[dep]}/actions/sign", f"{dep}.staff", {})
            resolves[dep] = out["opened"][0]["id"]
        for dep in departments:
            out = self.request("done", "POST", f"/api/v1/work/{resolves[dep]}/actions/done", f"{dep}.staff", RESULT)
        out = self.request("pass", "POST", f"/api/v1/work/{out['opened'][0]['id']}/actions/pass", FILER, {})
        out = self.request("rate", "POST", f"/api/v1/work/{out['opened'][0]['id']}/actions/rate", DISPATCHER, RATE)
        assert out["call"]["status"] == "closed", out["call"]


PROFILE_GROUPS = (  # (label, prefixes of code file paths), first match wins; "tottime" is attributed
    ("SpiffWorkflow", ("SpiffWorkflow",)),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("psycopg (driver)", ("psycopg",)),
    ("marshmallow / flask-smorest / apispec", ("marshmallow", "flask_smorest", "apispec", "webargs")),
    ("Flask / Werkzeug / limiter", ("flask", "werkzeug", "flask_limiter", "limits", "jinja2")),
    ("Huying engine/", ("/engine/",)),
    ("Huying workflows/", ("/workflows/",)),
    ("Huying web/", ("/web/",)),
    ("json / gzip / zlib (stdlib)", ("json", "gzip", "zlib", "<built-in method zlib", "_json")),
)
PROFILE_FUNCTIONS = (  # (label, file path part, function name): cumulative time of these calls
    ("auth: identify() (token lookup)", "web/api/security.py", "identify"),
    ("auth: token_user()", "workflows/auth.py", "token_user"),
    ("StoredVirtualClock.now() (HUYING_CLOCK=virtual)", "engine/clock.py", "now"),
    ("act_on_work_item()", "workflows/calls.py", "act_on_work_item"),
    ("file_call()", "workflows/calls.py", "file_call"),
    ("show_call()", "workflows/calls.py", "show_call"),
    ("runtime: restore the workflow (_load)", "engine/runtime.py", "_load"),
    ("runtime: complete()", "engine/runtime.py", "complete"),
    ("runtime: _save() (mirror items, dump state)", "engine/runtime.py", "_save"),
    ("spiff: dump_state()", "engine/spiff.py", "dump_state"),
    ("spiff: load_state()", "engine/spiff.py", "load_state"),
    ("SLA: keeper.sync()", "engine/sla.py", "sync"),
    ("session.flush()", "sqlalchemy/orm/session.py", "flush"),
    ("session.commit()", "sqlalchemy/orm/session.py", "commit"),
    ("response: marshmallow dump", "marshmallow/schema.py", "dump"),
    ("request: marshmallow load", "marshmallow/schema.py", "load"),
    ("JSON encode (flask json)", "flask/json/provider.py", "dumps"),
)


def profile_summary(prof, total_s: float) -> dict:
    import pstats

    st = pstats.Stats(prof)
    groups: dict[str, float] = {}
    funcs = {label: 0.0 for label, _f, _n in PROFILE_FUNCTIONS}
    for (filename, _line, name), (_cc, _nc, tt, ct, _callers) in st.stats.items():
        label = "other"
        for g, prefixes in PROFILE_GROUPS:
            if any(p in filename or (filename == "~" and p in name) for p in prefixes):
                label = g
                break
        groups[label] = groups.get(label, 0.0) + tt
        for flabel, fpart, fname in PROFILE_FUNCTIONS:
            if name == fname and filename.replace("\\", "/").endswith(fpart):
                funcs[flabel] += ct
    top = sorted(((ct, f"{Path(fn).name}:{ln} {nm}") for (fn, ln, nm), (_cc, _nc, _tt, ct, _c) in st.stats.items()),
                 reverse=True)[:40]
    top_own = sorted(((tt, f"{fn}:{ln} {nm}") for (fn, ln, nm), (_cc, _nc, tt, _ct, _c) in st.stats.items()),
                     reverse=True)[:30]
    profiled = sum(groups.values())
    return {"profiled_s": profiled, "wall_s": total_s,
            "tottime_by_group_share": {k: v / profiled for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "cumulative_share_of_key_functions": {k: v / profiled for k, v in funcs.items()},
            "top_cumulative": [(round(ct / profiled, 4), name) for ct, name in top],
            "top_own": [(round(tt / profiled, 4), name) for tt, name in top_own]}


def run_sql_pass(env: dict, scenarios: list[str], tickets: int) -> dict:
    """Statements and commits per request (exact), then a cProfile of the same requests."""
    import cProfile

    ip = InProcess(env)
    for scenario in scenarios:  # warm: tokens, spec cache, the policy and calendar caches
        ip.ticket(scenario)
    out = {"tickets_per_scenario": tickets, "scenarios": {}}
    for scenario in scenarios:
        res = {}
        for cache in ("warm", "cold"):
            # cold: the runtime's cache of restored workflows is emptied before every request, so every action
            # restores its workflow from the blob (as when another worker process did the previous step)
            ip.cold = cache == "cold"
            ip.log = []
            for _ in range(tickets):
                ip.ticket(scenario)
            res[cache] = summarize_sql(ip.log, tickets)
        ip.cold = False
        out["scenarios"][scenario] = res
    # the statements of one five-step ticket, in order (the evidence for "repeated lookups")
    ip.log = []
    ip.ticket(scenarios[0])
    out["one_ticket_statements"] = [{"kind": e["kind"], "commits": e["commits"],
                                     "statements": [" ".join(s.split())[:300] for s in e["statements"]]}
                                    for e in ip.log]
    # the profile: the first scenario, tickets x requests, warm workflow cache
    ip.log = []
    prof = cProfile.Profile(time.process_time)
    ip.profile = prof
    t0 = time.perf_counter()
    for _ in range(tickets):
        ip.ticket(scenarios[0])
    wall = time.perf_counter() - t0
    ip.profile = None
    out["profile"] = profile_summary(prof, wall)
    out["profile"]["scenario"] = scenarios[0]
    out["profile"]["requests"] = len(ip.log)
    out["profile"]["ms_per_request_profiled"] = statistics.fmean(e["ms"] for e in ip.log)
    ip.services.engine.dispose()
    return out


def summarize_sql(log_entries: list[dict], tickets: int) -> dict:
    by_kind: dict[str, dict] = {}
    for k in KINDS:
        es = [e for e in log_entries if e["kind"] == k]
        if not es:
            continue
        labels: dict[str, int] = {}
        repeated = 0
        for e in es:
            seen = set()
            for s, p in zip(e["statements"], e["params"], strict=True):
                labels[statement_label(s)] = labels.get(statement_label(s), 0) + 1
                if (s, p) in seen:
                    repeated += 1
                seen.add((s, p))
        n = len(es)
        by_kind[k] = {"count": n, "statements": statistics.fmean(len(e["statements"]) for e in es),
                      "commits": statistics.fmean(e["commits"] for e in es),
                      "repeated_identical_statements": repeated / n,
                      "sql_ms": statistics.fmean(e["sql_ms"] for e in es),
                      "ms": statistics.fmean(e["ms"] for e in es),
                      "cpu_ms": statistics.fmean(e["cpu_ms"] for e in es),
                      "statement_mix": {lab: round(c / n, 2) for lab, c in sorted(labels.items(), key=lambda kv: -kv[1])}}
    n_req = len(log_entries)
    return {"requests": n_req, "by_kind": by_kind,
            "statements_per_request": sum(len(e["statements"]) for e in log_entries) / n_req,
            "commits_per_request": sum(e["commits"] for e in log_entries) / n_req,
            "statements_per_ticket": sum(len(e["statements"]) for e in log_entries) / tickets,
            "commits_per_ticket": sum(e["commits"] for e in log_entries) / tickets,
            "ms_per_request_in_process": statistics.fmean(e["ms"] for e in log_entries),
            "cpu_ms_per_request_in_process": statistics.fmean(e["cpu_ms"] for e in log_entries),
            "cpu_ms_per_ticket_in_process": sum(e["cpu_ms"] for e in log_entries) / tickets}


def print_sql(res: dict) -> None:
    print()
    print(f"== SQL per request (in-process, Flask test client, same database; {res['tickets_per_scenario']} "
          f"tickets per scenario; warm = the worker still holds the restored workflow, cold = it restores it "
          f"from the blob) ==")
    for scenario, r in res["scenarios"].items():
        w, c = r["warm"], r["cold"]
        print(f"  {scenario}: {w['statements_per_request']:.1f} statements and {w['commits_per_request']:.2f} commits "
              f"per request ({w['statements_per_ticket']:.0f} / {w['commits_per_ticket']:.0f} per ticket); "
              f"app CPU {w['cpu_ms_per_ticket_in_process']:.0f} ms/ticket, {w['cpu_ms_per_request_in_process']:.1f} "
              f"ms/request (cold cache: {c['statements_per_request']:.1f} statements, "
              f"{c['cpu_ms_per_request_in_process']:.1f} CPU ms/request)")
        print(f"    {'request':<10} {'stmts':>6} {'commits':>8} {'repeated':>9} {'SQL ms':>7} {'ms':>6} {'CPU ms':>7}   "
              f"statements")
        for k, v in w["by_kind"].items():
            mix = ", ".join(f"{lab} {cnt:g}" for lab, cnt in list(v["statement_mix"].items())[:9])
            print(f"    {k:<10} {v['statements']:>6.1f} {v['commits']:>8.2f} {v['repeated_identical_statements']:>9.1f} "
                  f"{v['sql_ms']:>7.2f} {v['ms']:>6.1f} {v['cpu_ms']:>7.1f}   {mix}")
    p = res["profile"]
    print(f"  profile ({p['scenario']}, {p['requests']} requests, {p['ms_per_request_profiled']:.1f} ms/request "
          f"under cProfile): own CPU time by package")
    for k, v in p["tottime_by_group_share"].items():
        print(f"    {k:<42} {v:6.1%}")
    print("  cumulative time of key calls (share of the profiled time; nested calls overlap):")
    for k, v in p["cumulative_share_of_key_functions"].items():
        print(f"    {k:<50} {v:6.1%}")


# ---- the queue over 1,000,000 open work items ------------------------------------------------------------

# Open items by task (share in %, owner unit kind); the lanes, titles and properties come from the diagram.
ITEM_MIX = (("resolve", 52, "department"), ("sign", 7, "department"), ("street_handle", 7, "street"),
            ("street_triage", 5, "street"), ("community_handle", 5, "community"),
            ("district_coordinate", 2, "district"), ("verify", 11, "community"), ("feedback", 11, "street"))
STAGE_TARGET = {"community_handle": ("working_days", 1), "triage": ("working_hours", 2),
                "district_coordinate": ("working_days", 1), "sign": ("working_hours", 2),
                "resolve": ("working_days", 5), "verify": ("working_days", 1), "feedback": ("wall_hours", 24)}
BUSIEST = "water"  # the department clerk measured first gets the largest share of department work


def load_open_items(env: dict, rows: int, items_per_call: float, skew: float) -> dict:
    """Set-based load of ``rows`` open work items with their calls, instances and running SLA clocks.

    Calls are spread evenly over the 9 communities (and so the 3 streets); an item of a community or street
    task belongs to its call's community or street; department items are spread over the 22 departments
    with weight 1/rank^skew (``water`` first), district items go to the district.
    """
    from sqlalchemy import create_engine, select, text

    import engine.models  # noqa: F401
    import workflows.models  # noqa: F401
    from engine.definitions import SPEC_CACHE, latest_definition
    from engine.models import SlaClock, WorkItem
    from workflows.models import Call, OrgUnit, User

    eng = create_engine(PG_URL)
    from sqlalchemy.orm import Session

    with Session(eng) as session:
        definition = latest_definition(session, "call_dispatch")
        parsed = SPEC_CACHE.get(definition)
        t0 = session.scalar(text("SELECT coalesce(max(now), now()) FROM engine_clock"))
        if env["HUYING_CLOCK"] == "wall":
            t0 = session.scalar(text("SELECT now()"))
        communities = list(session.execute(
            select(OrgUnit.code, OrgUnit.parent_id).where(OrgUnit.kind == "community").order_by(OrgUnit.id)))
        street_of = dict(session.execute(select(OrgUnit.id, OrgUnit.code).where(OrgUnit.kind == "street")).all())
        departments = list(session.scalars(select(OrgUnit.code).where(OrgUnit.kind == "department")
                                           .order_by(OrgUnit.id)))
        district = session.scalar(select(OrgUnit.code).where(OrgUnit.kind == "district"))
        grid_users = dict(session.execute(select(OrgUnit.code, User.id).join(User, User.unit_id == OrgUnit.id)
                                          .where(User.role == "grid_worker")).all())
        categories = [c for c in session.scalars(text("SELECT code FROM category ORDER BY code"))]
    departments.remove(BUSIEST)
    departments.insert(0, BUSIEST)
    weights = [1 / (r + 1) ** skew for r in range(len(departments))]
    # 1000 slots, each department gets round(1000 * its weight share) of them
    slots = []
    for code, w in zip(departments, weights, strict=True):
        slots += [code] * max(1, round(1000 * w / sum(weights)))
    slots = (slots + [departments[0]] * 1000)[:1000]
    specs = {}
    for spec in [parsed.spec, *parsed.subprocess_specs.values()]:
        for name, ts in spec.task_specs.items():
            props = (getattr(ts, "extensions", None) or {}).get("properties")
            if props and props.get("sla_stage") and name not in specs:
                specs[name] = (ts.lane or "", ts.bpmn_name or name, props)
    mix = []
    for task, share, kind in ITEM_MIX:
        lane, title, props = specs.get(task, ("", task, {"sla_stage": task}))
        stage = props.get("sla_stage") or task
        tkind, amount = STAGE_TARGET.get(stage, ("working_days", 1))
        mix += [(task, title, lane, kind, stage, json.dumps(props, ensure_ascii=False), tkind, amount,
                 props.get("status") or "in_progress")] * share
    assert len(mix) == 100
    n_calls = max(1, round(rows / items_per_call))
    indexes = [*WorkItem.__table__.indexes, *SlaClock.__table__.indexes, *Call.__table__.indexes]
    t_start = time.perf_counter()
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        for idx in indexes:  # built once after the load
            idx.drop(conn)
        conn.execute(text("CREATE TEMP TABLE b_mix (slot int, task text, title text, lane text, kind text, "
                          "stage text, props text, tkind text, amount float, status text) ON COMMIT DROP"))
        conn.execute(text("INSERT INTO b_mix VALUES (:s, :task, :title, :lane, :kind, :stage, :props, :tkind, "
                          ":amount, :status)"),
                     [dict(zip(("s", "task", "title", "lane", "kind", "stage", "props", "tkind", "amount", "status"),
                               (i, *m), strict=True)) for i, m in enumerate(mix)])
        conn.execute(text("CREATE TEMP TABLE b_comm (n int, code text, street text, reporter int) ON COMMIT DROP"))
        conn.execute(text("INSERT INTO b_comm VALUES (:n, :code, :street, :reporter)"),
                     [{"n": i, "code": c, "street": street_of[p], "reporter": grid_users[c]}
                      for i, (c, p) in enumerate(communities)])
        conn.execute(text("CREATE TEMP TABLE b_dep (n int, code text) ON COMMIT DROP"))
        conn.execute(text("INSERT INTO b_dep VALUES (:n, :code)"), [{"n": i, "code": c} for i, c in enumerate(slots)])
        conn.execute(text("CREATE TEMP TABLE b_cat (n int, code text) ON COMMIT DROP"))
        conn.execute(text("INSERT INTO b_cat VALUES (:n, :code)"), [{"n": i, "code": c} for i, c in enumerate(categories)])
        inst0 = conn.execute(text("SELECT coalesce(max(id), 0) + 1 FROM engine_process_instance")).scalar()
        conn.execute(text("""
            INSERT INTO engine_process_instance (id, definition_id, business_key, status, state, lock_version,
                                                 created_at, updated_at)
            SELECT :inst0 + g, :def, 'HYQ' || lpad(g::text, 7, '0'), 'running', '\\x00'::bytea, 1,
                   :t0 - make_interval(secs => (g * 7919) % 1209600), :t0
            FROM generate_series(0::bigint, :n - 1) g"""), {"inst0": inst0, "def": definition.id, "n": n_calls, "t0": t0})
        conn.execute(text("SELECT setval(pg_get_serial_sequence('engine_process_instance', 'id'), "
                          "(SELECT max(id) FROM engine_process_instance))"))
        conn.execute(text("""
            INSERT INTO call (number, category_code, description, location, urgency, photos, reporter_id,
                              community_code, street_code, status, level, instance_id, handling_level,
                              suggested_assists, sla_class, problem_ticket, reopen_count, rework_count,
                              created_at, updated_at)
            SELECT 'HYQ' || lpad(g::text, 7, '0'), k.code, '批量载入的待办呼叫 ' || g, '测试地址 ' || (g % 500) || ' 号',
                   'normal', '[]'::json, c.reporter, c.code, c.street, 'in_progress', 'street', :inst0 + g, 'street',
                   '[]'::json, 'standard', false, 0, 0,
                   :t0 - make_interval(secs => (g * 7919) % 1209600), :t0
            FROM generate_series(0::bigint, :n - 1) g
            JOIN b_comm c ON c.n = g % :ncomm
            JOIN b_cat k ON k.n = (g * 7) % :ncat"""),
                     {"inst0": inst0, "n": n_calls, "t0": t0, "ncomm": len(communities), "ncat": len(categories)})
        # item g: call g % n_calls; its task from the mix; its unit from the call or the department slots
        conn.execute(text("""
            INSERT INTO engine_work_item (instance_id, task_id, task_name, title, lane, owner_unit, via, properties,
                                          context, state, created_at, due_at)
            SELECT :inst0 + (g % :ncalls), 'q-' || g, m.task, m.title, m.lane,
                   CASE m.kind WHEN 'community' THEN c.code WHEN 'street' THEN c.street
                               WHEN 'district' THEN :district ELSE d.code END,
                   NULL, m.props::json, '{}'::json, 'open',
                   :t0 - make_interval(secs => ((g % :ncalls) * 7919) % 1209600),
                   :t0 + make_interval(secs => 3600 + (g * 104729) % 3628800)
            FROM generate_series(0::bigint, :n - 1) g
            JOIN b_mix m ON m.slot = (g * 37) % 100
            JOIN b_comm c ON c.n = (g % :ncalls) % :ncomm
            JOIN b_dep d ON d.n = (g * 7919 + g / 1000) % 1000"""),
                     {"inst0": inst0, "ncalls": n_calls, "n": rows, "t0": t0, "district": district,
                      "ncomm": len(communities)})
        conn.execute(text("""
            INSERT INTO engine_sla_clock (instance_id, subject, stage, unit, work_item_id, round, state, target_kind,
                target_amount, warn_ratio, overdue_working_days, policy_version, started_at, shift_seconds,
                paused_seconds, extension_days, warn_at, due_at, overdue_at, next_fire_at, attempts,
                assumed_calendar, lock_version)
            SELECT wi.instance_id, 'HYQ' || lpad((wi.instance_id - :inst0)::text, 7, '0'),
                   m.stage, wi.owner_unit, wi.id, 1, 'running', m.tkind, m.amount, 0.8, 5, 1, wi.created_at,
                   0, 0, 0, wi.due_at - interval '1 hour', wi.due_at, wi.due_at + interval '7 days',
                   wi.due_at - interval '1 hour', 0, false, 1
            FROM engine_work_item wi JOIN (SELECT DISTINCT task, stage, tkind, amount FROM b_mix) m
                 ON m.task = wi.task_name
            WHERE wi.task_id LIKE 'q-%'"""), {"inst0": inst0})
        for idx in indexes:
            idx.create(conn)
    load_s = time.perf_counter() - t_start
    import psycopg

    t_an = time.perf_counter()
    with psycopg.connect(PG_PLAIN, autocommit=True) as pc:
        pc.execute("VACUUM ANALYZE")
    analyze_s = time.perf_counter() - t_an
    with eng.connect() as conn:
        by_unit = dict(conn.execute(text("SELECT owner_unit, count(*) FROM engine_work_item WHERE state = 'open' "
                                         "GROUP BY 1")).all())
        sizes = dict(conn.execute(text("SELECT c, pg_total_relation_size(c) FROM unnest(ARRAY['engine_work_item', "
                                       "'engine_sla_clock', 'call', 'engine_process_instance']) c")).all())
    eng.dispose()
    return {"rows": rows, "calls": n_calls, "load_seconds": round(load_s, 1), "vacuum_analyze_seconds": round(analyze_s, 1),
            "open_items": sum(by_unit.values()), "open_items_by_unit": dict(sorted(by_unit.items(), key=lambda kv: -kv[1])),
            "bytes": sizes, "department_skew": skew, "t0": str(t0)}


def queue_users(by_unit: dict) -> list[tuple[str, str]]:
    """(label, username): the busiest department's clerk, a median department's, a street, a community."""
    from workflows.demo import ROLE_SUFFIX  # noqa: F401 - documents the naming: <unit>.<role suffix>

    deps = json.loads((ROOT / "config/demo_district.json").read_text(encoding="utf-8"))["departments"]
    dep_counts = sorted(((by_unit.get(d["code"], 0), d["code"]) for d in deps), reverse=True)
    median_dep = dep_counts[len(dep_counts) // 2][1]
    return [("department (busiest)", f"{dep_counts[0][1]}.staff"), ("department (median)", f"{median_dep}.staff"),
            ("street", f"{STREET}.dispatcher"), ("community", f"{COMMUNITY}.staff")]


def run_queue(port: int, users: list[tuple[str, str]], by_unit: dict, requests: int, clients: int) -> dict:
    """Page 1 of every user's queue, sequentially (one client); for the first (busiest) queue also page 2
    and page 1 read by ``clients`` threads at once."""
    results = {}
    pages = {"page 1": "/api/v1/work?per_page=20", "page 2": "/api/v1/work?per_page=20&page=2"}
    for n, (label, user) in enumerate(users):
        unit = user.split(".", 1)[0]
        mine_pages = pages if n == 0 else {"page 1": pages["page 1"]}
        c = Client(port)
        token = sign_in(c, user)
        for _ in range(10):  # warm the worker processes and the buffer cache
            for path in mine_pages.values():
                c.get(path, token)
        per_page = {}
        total = None
        for page, path in mine_pages.items():
            lat = []
            for _ in range(requests):
                t0 = time.perf_counter()
                status, out = c.get(path, token)
                lat.append(time.perf_counter() - t0)
                assert status == 200 and len(out["items"]) == 20, (status, str(out)[:300])
                total = out["total"]
            per_page[page] = {
                "n": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3,
                "p99_ms": pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3}
        c.close()
        if n > 0:
            results[label] = {"user": user, "unit": unit, "open_items_of_unit": by_unit.get(unit, 0), "total": total,
                              "pages": per_page}
            continue
        # concurrent: ``clients`` threads read page 1 of this queue at once
        lat_c: list[float] = []
        lock = threading.Lock()
        errors: list[str] = []

        def reader(user=user, lock=lock, lat_c=lat_c, errors=errors):
            cl = Client(port)
            try:
                tok = sign_in(cl, user)
                mine = []
                for _ in range(max(1, requests // clients)):
                    t0 = time.perf_counter()
                    status, _out = cl.get(pages["page 1"], tok)
                    mine.append(time.perf_counter() - t0)
                    assert status == 200
                with lock:
                    lat_c.extend(mine)
            except BaseException:  # noqa: BLE001
                errors.append(traceback.format_exc())
            finally:
                cl.close()

        threads = [threading.Thread(target=reader) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise RuntimeError(errors[0])
        per_page[f"page 1, {clients} clients"] = {
            "n": len(lat_c), "p50_ms": pct(lat_c, 50) * 1e3, "p95_ms": pct(lat_c, 95) * 1e3,
            "p99_ms": pct(lat_c, 99) * 1e3, "max_ms": max(lat_c) * 1e3, "requests_per_s": len(lat_c) / wall}
        results[label] = {"user": user, "unit": unit, "open_items_of_unit": by_unit.get(unit, 0), "total": total,
                          "pages": per_page}
    return results


def explain_queue(env: dict, users: list[tuple[str, str]]) -> dict:
    """Per queue: the statements of one in-process request and EXPLAIN (ANALYZE, BUFFERS) of its queries;
    a cProfile of the first queue's requests; what-if timings of other ways to count the queue."""
    import cProfile

    ip = InProcess(env)
    out: dict = {"queues": {}}
    for n, (label, user) in enumerate(users):
        for _ in range(3):
            ip.request("queue", "GET", "/api/v1/work?per_page=20", user)  # sign in + warm
        ip.log = []
        ip.request("queue", "GET", "/api/v1/work?per_page=20", user)
        entry = ip.log[-1]
        labels: dict[str, int] = {}
        for sql in entry["statements"]:
            labels[statement_label(sql)] = labels.get(statement_label(sql), 0) + 1
        q = {"user": user, "statements": len(entry["statements"]), "statement_mix": labels,
             "commits": entry["commits"], "sql_ms": entry["sql_ms"], "plans": []}
        if n == 0:
            ip.log = []
            for _ in range(20):
                ip.request("queue", "GET", "/api/v1/work?per_page=20", user)
            q["in_process_cpu_ms"] = statistics.median(e["cpu_ms"] for e in ip.log)
            q["in_process_ms"] = statistics.median(e["ms"] for e in ip.log)
            prof = cProfile.Profile(time.process_time)
            ip.profile = prof
            t0 = time.perf_counter()
            for _ in range(20):
                ip.request("queue", "GET", "/api/v1/work?per_page=20", user)
            q["profile"] = profile_summary(prof, time.perf_counter() - t0)
            ip.profile = None
        with ip.services.engine.connect() as conn:
            for sql, params in zip(entry["statements"], entry["param_objects"], strict=True):
                if "engine_work_item" not in sql.split("WHERE")[0]:
                    continue  # the queue's own queries only (not the token, the reporters, the clocks)
                plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()]
                exec_ms = next((float(ln.split(":")[1].split()[0]) for ln in plan if ln.startswith("Execution Time")),
                               None)
                q["plans"].append({"sql": " ".join(sql.split())[:400], "execution_ms": exec_ms, "plan": plan})
        out["queues"][label] = q
    ip.services.engine.dispose()
    out["count_what_if"] = count_what_if([u for _l, u in users])
    return out


def count_what_if(usernames: list[str], runs: int = 15) -> dict:
    """Median ms (PostgreSQL, via psycopg) of the queue's count as the API runs it and two alternatives."""
    import psycopg

    from workflows.org import LANE_ROLES

    res = {}
    with psycopg.connect(PG_PLAIN, autocommit=True) as conn:
        for username in usernames:
            role, unit = conn.execute("SELECT u.role, o.code FROM app_user u JOIN org_unit o ON o.id = u.unit_id "
                                      "WHERE u.username = %s", (username,)).fetchone()
            lanes = [lane for lane, roles in LANE_ROLES.items() if role in roles]
            variants = {
                "count(*) as the API runs it": ("SELECT count(*) FROM engine_work_item WHERE owner_unit = %s AND "
                                                "state = 'open' AND lane = ANY(%s)", (unit, lanes)),
                "count(*) capped at 1,000 (LIMIT in a subquery)": (
                    "SELECT count(*) FROM (SELECT 1 FROM engine_work_item WHERE owner_unit = %s AND state = 'open' "
                    "AND lane = ANY(%s) LIMIT 1000) s", (unit, lanes)),
                "count(*) without the lane filter (index-only scan possible)": (
                    "SELECT count(*) FROM engine_work_item WHERE owner_unit = %s AND state = 'open'", (unit,)),
            }
            res[username] = {}
            for name, (sql, params) in variants.items():
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    conn.execute(sql, params).fetchone()
                    times.append((time.perf_counter() - t0) * 1e3)
                res[username][name] = statistics.median(times)
    return res


def print_queue(res: dict) -> None:
    ld = res["loaded"]
    print()
    print(f"== the work queue with {ld['open_items']:,} open work items ({ld['calls']:,} calls; loaded in "
          f"{ld['load_seconds']} s, VACUUM ANALYZE {ld['vacuum_analyze_seconds']} s) ==")
    print(f"  {'queue':<22} {'user':<22} {'unit items':>10} {'request':<18} {'n':>5} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7}")
    for label, r in res["queues"].items():
        for page, v in r["pages"].items():
            print(f"  {label:<22} {r['user']:<22} {r['open_items_of_unit']:>10,} {page:<18} {v['n']:>5} "
                  f"{v['p50_ms']:>7.1f} {v['p95_ms']:>7.1f} {v['p99_ms']:>7.1f} {v['max_ms']:>7.1f}")
    ex = res.get("explain")
    if ex:
        print("  one request per queue, in-process: statements; PostgreSQL execution ms (EXPLAIN ANALYZE) of the "
              "page query / the count")
        for label, q in ex["queues"].items():
            ms = " / ".join(f"{p['execution_ms']:.2f}" for p in q["plans"])
            print(f"    {label:<22} {q['statements']:>3} statements ("
                  + ", ".join(f"{k} {v}" for k, v in q["statement_mix"].items()) + f"); {ms} ms")
        first = next(iter(ex["queues"].values()))
        print(f"  {first['user']}: median {first['in_process_ms']:.1f} ms per request in-process, "
              f"{first['in_process_cpu_ms']:.1f} ms CPU; own CPU time by package: " + ", ".join(
                  f"{k} {v:.0%}" for k, v in first["profile"]["tottime_by_group_share"].items() if v >= 0.02))
        print("  what-if, the count alone (median ms, psycopg):")
        for user, variants in ex["count_what_if"].items():
            print(f"    {user:<22} " + ";  ".join(f"{k} {v:.1f}" for k, v in variants.items()))
    t = res["target"]
    print(f"  target p99 <= 20 ms ({t['queue']}, page 1, sequential): {fmt(t['p99_ms'])} ms: "
          f"{'MET' if t['met'] else 'NOT MET'}")


# ---- main ------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4, help="concurrent API clients (threads) (4)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    ap.add_argument("--gunicorn-args", default="", help="extra gunicorn arguments, e.g. '-k gthread --threads 4'")
    ap.add_argument("--port", type=int, default=0, help="port for gunicorn (0: a free one)")
    ap.add_argument("--clock", choices=("wall", "virtual"), default="wall",
                    help="HUYING_CLOCK of the server. wall: as in production. virtual: the clock stored in the "
                         "database, read with a SELECT and a COMMIT of its own at every clock.now() (~5 per "
                         "request). No scheduler runs, so no SLA clock fires during the run either way")
    ap.add_argument("--scenarios", default="five-step,scenario-1", help="comma-separated: five-step, scenario-1")
    ap.add_argument("--tickets", type=int, default=40, help="tickets per round, over all clients (40)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per scenario (5)")
    ap.add_argument("--warmup", type=int, default=8, help="warm-up tickets (over all clients) per scenario (8)")
    ap.add_argument("--lookup", choices=("filed", "call", "queue", "both"), default="filed",
                    help="how a client finds the new call's triage item: from the filing's response (filed, no "
                         "extra request), GET /api/v1/calls/{number} (call) or the dispatcher's queue; both = "
                         "the rounds with filed, then one round with the queue")
    ap.add_argument("--sql-tickets", type=int, default=10, help="tickets per scenario in the instrumented pass (10)")
    ap.add_argument("--skip-sql", action="store_true", help="skip the instrumented in-process pass")
    ap.add_argument("--skip-tickets", action="store_true", help="skip the tickets part")
    ap.add_argument("--skip-queue", action="store_true", help="skip the queue part")
    ap.add_argument("--queue-items", type=int, default=1_000_000, help="open work items for the queue part (1,000,000)")
    ap.add_argument("--items-per-call", type=float, default=2.5, help="open items per call in the load (2.5)")
    ap.add_argument("--department-skew", type=float, default=0.5,
                    help="department d of 22 (by rank) gets a share of department work ~ 1/rank^skew (0.5)")
    ap.add_argument("--queue-requests", type=int, default=200,
                    help="timed reads of each queue (page 1); of the busiest also page 2, and concurrently (200)")
    ap.add_argument("--keep", action="store_true", help=f"leave {PG_DB} in place at the end")
    args = ap.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")

    m = machine()
    print(machine_line(m), flush=True)
    started = time.monotonic()
    env = server_env(args)
    port = args.port or free_port()
    result: dict = {"benchmark": "http", "machine": m, "args": vars(args),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "server": None}
    server = None
    try:
        log(f"fresh database {PG_DB}: huying db upgrade, huying demo load")
        prepare_database(env)
        server = Server(env, port, args.workers, args.gunicorn_args.split())
        result["server"] = {"argv": server.argv, "env": {k: ("<random>" if k == "HUYING_SECRET_KEY" else v)
                                                         for k, v in env.items() if k.startswith("HUYING_")}}
        log(f"gunicorn up: {' '.join(server.argv[1:])} (pid {server.proc.pid})")
        if not args.skip_tickets:
            result["tickets"] = {}
            lookups = ["filed"] if args.lookup in ("filed", "both") else [args.lookup]
            for scenario in scenarios:
                log(f"tickets: {scenario}, {args.clients} clients, warm-up {args.warmup}, {args.rounds} rounds "
                    f"of {args.tickets}")
                r = run_tickets(port, server, scenario, args.clients, args.tickets, args.rounds, args.warmup,
                                lookups[0])
                result["tickets"][scenario] = r
                print_tickets(r)
                if args.lookup == "both":
                    r2 = run_tickets(port, server, scenario, args.clients, args.tickets, 1, args.clients, "queue")
                    result["tickets"][f"{scenario} (lookup via queue)"] = r2
                    lq = r2["by_kind"]["lookup"]
                    print(f"  with an extra lookup in the dispatcher's queue (1 round): "
                          f"{r2['median_tickets_per_s']:.2f} tickets/s; lookup p50/p95 {lq['p50_ms']:.1f}/"
                          f"{lq['p95_ms']:.1f} ms")
        if not args.skip_sql:
            log(f"instrumented in-process pass: {args.sql_tickets} tickets per scenario, then a profile")
            result["sql"] = run_sql_pass(env, scenarios, args.sql_tickets)
            print_sql(result["sql"])
        if not args.skip_queue:
            log(f"queue: loading {args.queue_items:,} open work items (set-based SQL)")
            loaded = load_open_items(env, args.queue_items, args.items_per_call, args.department_skew)
            log(f"  loaded in {loaded['load_seconds']} s + VACUUM ANALYZE {loaded['vacuum_analyze_seconds']} s")
            users = queue_users(loaded["open_items_by_unit"])
            queues = run_queue(port, users, loaded["open_items_by_unit"], args.queue_requests, args.clients)
            explain = explain_queue(env, users)
            first = queues[users[0][0]]["pages"]["page 1"]
            result["queue"] = {"loaded": loaded, "queues": queues, "explain": explain,
                               "target": {"queue": users[0][0], "p99_ms": first["p99_ms"],
                                          "met": first["p99_ms"] <= 20.0}}
            print_queue(result["queue"])
            if not args.skip_tickets and "five-step" in scenarios:
                log(f"tickets: five-step again, 1 round of {args.tickets}, now beside {loaded['open_items']:,} "
                    f"open work items")
                r = run_tickets(port, server, "five-step", args.clients, args.tickets, 1, args.clients, "filed")
                result["tickets"][f"five-step (beside {loaded['open_items']:,} open items)"] = r
                print(f"  five-step beside {loaded['open_items']:,} open items: {r['median_tickets_per_s']:.2f} "
                      f"tickets/s, p50/p95 {r['latency_ms']['p50']:.1f}/{r['latency_ms']['p95']:.1f} ms")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            try:
                drop_database()
            except Exception:  # noqa: BLE001
                pass
    result["seconds"] = time.monotonic() - started
    result["loadavg_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "http.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print()
    print("== summary ==")
    print(machine_line(machine()))
    for name, r in (result.get("tickets") or {}).items():
        line = (f"{name}: {r['median_tickets_per_s']:.2f} tickets/s (median of {r['rounds']}), "
                f"{r['requests_per_ticket']} requests/ticket, p50/p95 {r['latency_ms']['p50']:.1f}/"
                f"{r['latency_ms']['p95']:.1f} ms")
        line += f"; CPU-bound ceiling {r['cpu_ceiling_tickets_per_s']:.1f} tickets/s"
        if name == "five-step":
            line += f"  (target >= 25 tickets/s: {'MET' if r['median_tickets_per_s'] >= 25 else 'NOT MET'})"
        print(line)
    if "queue" in result:
        t = result["queue"]["target"]
        print(f"queue p99 ({t['queue']}, {result['queue']['loaded']['open_items']:,} open items): "
              f"{t['p99_ms']:.1f} ms (target <= 20 ms: {'MET' if t['met'] else 'NOT MET'})")
    print(f"total {result['seconds']:.0f} s; {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
