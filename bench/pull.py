#!/usr/bin/env python3
"""tether pull benchmark: a whole Pull User Data job against the Jira Cloud simulator.

N users are imported (default 150,000: Atlassian's per-directory provisioning limit), and
`jira-sim --flavor cloud --latency-ms 50` serves one matching account per user. Then, per
store, `tether pull --source jira` runs the job end to end: fetch every page over HTTP,
store the accounts, plan, apply (N External IDs written), report. A second pull must find
nothing to do. Prints the job's per-phase timings and the wall-clock total of the command.

Target (issue 4, "Speed"): the first pull under 10 s. See bench/README.md. Python 3 standard
library only; PostgreSQL through the `psql` client.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 10.0
SECRET_KEY = "5e" * 32  # a fixed sealing key for the benchmark's throwaway databases


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def generate_users(path: Path, n: int) -> None:
    if path.exists():
        return
    log(f"generating {n} users in {path}")
    with path.open("w") as out:
        out.write("id,username,email,display_name,active,external_id\n")
        for i in range(1, n + 1):
            # Mixed-case e-mails: the match is on the normalized key, as in the field.
            out.write(f"u{i:06d},user{i},User{i:06d}@Example.com,User {i},true,\n")


def emails_file(path: Path, n: int) -> None:
    if path.exists():
        return
    with path.open("w") as out:
        for i in range(1, n + 1):
            out.write(f"user{i:06d}@example.com\n")


def start_simulator(jira_sim: Path, emails: Path, latency_ms: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [str(jira_sim), "--flavor", "cloud", "--emails-from", str(emails), "--plain",
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    url = process.stdout.readline().strip() if process.stdout else ""
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"jira-sim did not print its URL (got {url!r})")
    return process, url


def run(tether: Path, db_url: str, args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [str(tether), *args], env={**os.environ, "TETHER_DATABASE_URL": db_url, **(env or {})},
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"tether {' '.join(args)} failed ({out.returncode}):\n{out.stderr}{out.stdout}")
    return elapsed, out.stdout


def configure(tether: Path, db_url: str, sim_url: str, args: argparse.Namespace) -> None:
    """Adds the source through the API, as the Sources page would (the credential is sealed)."""
    env = {**os.environ, "TETHER_DATABASE_URL": db_url, "TETHER_SECRET_KEY": SECRET_KEY,
           "TETHER_JOB_WORKERS": "1"}
    _, out = run(tether, db_url, ["token", "create", "--name", "bench", "--scope", "admin"])
    token = out.strip().splitlines()[-1]
    server = subprocess.Popen([str(tether), "serve", "--listen", "127.0.0.1:0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = ""
        for line in server.stderr:  # type: ignore[union-attr]
            if line.startswith("tether: listening on "):
                base = line.split("listening on ", 1)[1].strip()
                break
        if not base:
            raise SystemExit("tether serve did not start")

        def call(method: str, path: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(
                base + path, method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request) as response:
                text = response.read().decode()
                return json.loads(text) if text else {}

        call("POST", "/api/v1/sources", {
            "name": "jira", "kind": "jira_cloud", "secret": "sim-token",
            "settings": {"base_url": sim_url, "user": "sim@example.com",
                         "page_size": args.page_size, "concurrency": args.concurrency},
        })
        if args.threshold is not None:
            settings = call("GET", "/api/v1/settings")
            settings["mass_change_threshold_percent"] = args.threshold
            call("PUT", "/api/v1/settings", settings)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def fresh_database(store: str, out: Path, pg_url: str | None) -> str:
    if store == "sqlite":
        path = out / "pull-bench.db"
        for suffix in ("", "-wal", "-shm", ".key"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:{path}"
    if not pg_url:
        raise SystemExit("--stores postgres needs --pg-url (a server whose role may CREATE DATABASE)")
    name = "tether_bench_pull"
    for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", pg_url, "-qc", sql], check=True, capture_output=True)
    return pg_url.rsplit("/", 1)[0] + "/" + name


def measure(store: str, args: argparse.Namespace, users: Path, sim_url: str) -> dict:
    db_url = fresh_database(store, args.out, args.pg_url)
    env = {"TETHER_SECRET_KEY": SECRET_KEY}
    log(f"[{store}] importing {args.n} users")
    import_s, _ = run(args.tether, db_url, ["import", "users", str(users)])
    configure(args.tether, db_url, sim_url, args)
    pull = ["pull", "--source", "jira", "--format", "json"] + (["--approve"] if args.threshold is None else [])
    log(f"[{store}] tether pull (first: links everyone)")
    first_s, first_out = run(args.tether, db_url, pull, env)
    first = json.loads(first_out)
    log(f"[{store}] tether pull (second: nothing to do)")
    second_s, second_out = run(args.tether, db_url, pull, env)
    second = json.loads(second_out)
    checks = {
        "first succeeded": first["state"] == "succeeded",
        f"first applied {args.n}": first["report"]["applied"] == args.n,
        f"first fetched {args.n}": first["report"]["fetch"]["accounts"] == args.n,
        "second planned 0": second["report"]["planned"] == 0,
        "second stored nothing": second["report"]["store"]["inserted"] + second["report"]["store"]["updated"] == 0,
    }
    return {"store": store, "import_s": import_s, "first_s": first_s, "second_s": second_s,
            "first": first["report"], "second": second["report"], "checks": checks}


def table(results: list[dict], args: argparse.Namespace) -> None:
    print(f"tether pull: {args.n} accounts from jira-sim (cloud, {args.latency_ms} ms per page, "
          f"page size {args.page_size}, concurrency {args.concurrency}), {args.n} matching users")
    print(f"{'store':<9} {'run':<7} {'fetch':>8} {'store':>8} {'plan':>8} {'apply':>8} {'job':>8} {'wall':>8}  target")
    for r in results:
        for name, report, wall in (("first", r["first"], r["first_s"]), ("second", r["second"], r["second_s"])):
            t = report["timings"]
            verdict = ""
            if name == "first":
                verdict = "ok" if wall < TARGET_SECONDS else f"MISS ({wall / TARGET_SECONDS:.2f}x)"
            print(f"{r['store']:<9} {name:<7} {t['fetch_ms'] / 1000:>7.2f}s {t['store_ms'] / 1000:>7.2f}s "
                  f"{t['plan_ms'] / 1000:>7.2f}s {t['apply_ms'] / 1000:>7.2f}s "
                  f"{report['duration_ms'] / 1000:>7.2f}s {wall:>7.2f}s  {verdict}")
        print(f"{'':<9} of the first store phase, marking accounts not seen: "
              f"{r['first']['timings'].get('mark_seen_ms', 0) / 1000:.2f}s")
        failed = [name for name, passed in r["checks"].items() if not passed]
        print(f"{'':<9} checks: {'all passed' if not failed else 'FAIL ' + ', '.join(failed)}; "
              f"import of the users (not timed in the job): {r['import_s']:.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=150_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("TETHER_TEST_PG_URL"))
    parser.add_argument("--threshold", type=int, default=100,
                        help="mass-change threshold for the run (default 100: no hold; "
                             "pass -1 to keep 20%% and approve up front with --approve)")
    parser.add_argument("--tether", type=Path, default=ROOT / "target/release/tether")
    parser.add_argument("--jira-sim", type=Path, default=ROOT / "target/release/jira-sim")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.threshold is not None and args.threshold < 0:
        args.threshold = None
    args.out.mkdir(parents=True, exist_ok=True)
    for binary in (args.tether, args.jira_sim):
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: cargo build --release -p tether -p tether-sources --bins")
    users = args.out / f"pull-users-{args.n}.csv"
    emails = args.out / f"pull-emails-{args.n}.txt"
    generate_users(users, args.n)
    emails_file(emails, args.n)
    sim, sim_url = start_simulator(args.jira_sim, emails, args.latency_ms)
    try:
        results = [measure(store.strip(), args, users, sim_url) for store in args.stores.split(",")]
    finally:
        sim.kill()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        table(results, args)


if __name__ == "__main__":
    main()
