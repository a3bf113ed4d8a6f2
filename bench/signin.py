#!/usr/bin/env python3
"""tether sign-in benchmark: the sign-in decision and its write, server side.

Generates N users (default 1,000,000: half linked, External ID acc-I; half not), imports them
with `tether import users` into a fresh SQLite database (or PostgreSQL with --pg-url), turns
on Auto-populate account ID, serves them with `tether serve` (release build, JSON request
logs), and sends --requests sign-in decisions to POST /api/v1/sign-in/resolve, one at a time
over one keep-alive connection, in a fixed mix:

  - 40% hard match: a linked user's account ID (decision: linked; writes the trail);
  - 40% soft match: an unlinked user's e-mail in upper case, verified (decision: new_link;
    writes the External ID, its audit entry and the trail);
  - 20% refusal: an unverified e-mail (decision: email_not_verified; writes the trail).

Server-side time is each request's `elapsed_ms` from tether's own request log (the whole
handler: token check, settings, the facts read, the decision, the guarded write, the trail
entry, JSON); client time includes the loopback round trip. Prints p50/p95/p99/max of both
per kind and overall, and the target of issue 5 (decision + write < 2 ms p99 server side).
Python 3 standard library only. See bench/README.md ("Sign-in").
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 2.0
ROUTE = "/api/v1/sign-in/resolve"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values):>6}  p50={percentile(values, 50):6.3f}  p95={percentile(values, 95):6.3f}  "
        f"p99={percentile(values, 99):6.3f}  max={max(values) if values else float('nan'):7.3f} ms"
    )


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="users (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=20_000, help="decisions to send (default 20,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pg-url", help="benchmark on PostgreSQL: a database URL the run may fill")
    parser.add_argument("--binary", default=str(ROOT / "target/release/tether"))
    args = parser.parse_args()

    binary = Path(args.binary)
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `cargo build --release -p tether` first")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="tether-signin-bench-"))
    db = args.pg_url or f"sqlite:{work / 'tether.db'}"
    env = dict(os.environ, TETHER_DATABASE_URL=db)
    for name in list(env):
        if name.startswith("TETHER_OIDC_"):
            del env[name]

    # Users: even i linked (External ID acc-i), odd i not.
    users = work / "users.csv"
    started = time.monotonic()
    with users.open("w") as out:
        out.write("id,username,email,display_name,active,external_id\n")
        for i in range(args.n):
            ext = f"acc-{i}" if i % 2 == 0 else ""
            out.write(f"u{i},user{i},user{i}@example.com,User {i},true,{ext}\n")
    run([str(binary), "import", "users", str(users)], env)
    print(f"imported {args.n:,} users in {time.monotonic() - started:.1f} s ({db})")
    token = run([str(binary), "token", "create", "--name", "bench", "--scope", "admin"], env).strip().splitlines()[-1]
    if args.pg_url:
        subprocess.run(
            ["psql", args.pg_url, "-qc",
             "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ('auto_populate', 'true', now(), 'bench') "
             "ON CONFLICT (key) DO UPDATE SET value = 'true'"],
            check=True,
        )
    else:
        connection = sqlite3.connect(work / "tether.db")
        connection.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ('auto_populate', 'true', "
            "'2026-01-01T00:00:00.000000Z', 'bench') ON CONFLICT (key) DO UPDATE SET value = 'true'"
        )
        connection.commit()
        connection.close()

    server = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0"],
        env=dict(env, TETHER_LOG_FORMAT="json", RUST_LOG="info"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    port_ready = threading.Event()
    port: list[int] = []
    server_ms: list[tuple[str, float]] = []  # (request id, elapsed_ms)
    decision_ms: list[tuple[str, float]] = []  # (request id, the app function's time)

    def read_logs() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            if "listening on http://" in line and not port:
                port.append(int(line.rsplit(":", 1)[1].strip().rstrip("/")))
                port_ready.set()
                continue
            if ROUTE not in line and "sign-in resolved" not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            fields = record.get("fields", {})
            spans = record.get("spans") or [record.get("span", {})]
            request_id = next((s.get("request_id") for s in spans if s and s.get("request_id")), "")
            if fields.get("route") == ROUTE and "elapsed_ms" in fields:
                server_ms.append((request_id, float(fields["elapsed_ms"])))
            elif fields.get("message") == "sign-in resolved" and "decision_us" in fields:
                decision_ms.append((request_id, float(fields["decision_us"]) / 1000.0))

    threading.Thread(target=read_logs, daemon=True).start()
    if not port_ready.wait(60):
        server.kill()
        sys.exit("tether serve did not start within 60 s")

    # The mix, decided up front so it is the same for every run with the same seed.
    linked = list(range(0, args.n, 2))
    unlinked = list(range(1, args.n, 2))
    rng.shuffle(linked)
    rng.shuffle(unlinked)
    plan: list[tuple[str, dict[str, object]]] = []
    for k in range(args.requests):
        draw = rng.random()
        if draw < 0.4:
            i = linked[k % len(linked)]
            plan.append(("hard match (linked)", {"issuer": "https://idp.example.com", "subject": f"acc-{i}",
                                                  "email": f"user{i}@example.com", "email_verified": True}))
        elif draw < 0.8:
            i = unlinked.pop()
            plan.append(("soft match (new_link)", {"issuer": "https://idp.example.com", "subject": f"new-{i}",
                                                    "email": f"USER{i}@EXAMPLE.COM", "email_verified": True}))
        else:
            i = unlinked.pop()
            plan.append(("refused (email_not_verified)", {"issuer": "https://idp.example.com", "subject": f"nv-{i}",
                                                           "email": f"user{i}@example.com", "email_verified": False}))

    connection = http.client.HTTPConnection("127.0.0.1", port[0])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client_ms: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    expected = {"hard match (linked)": "linked", "soft match (new_link)": "new_link",
                "refused (email_not_verified)": "email_not_verified"}
    for index, (kind, body) in enumerate(plan):
        request_id = f"bench-{index}"
        started = time.perf_counter()
        connection.request("POST", ROUTE, body=json.dumps(body), headers=dict(headers, **{"X-Request-Id": request_id}))
        response = connection.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            server.kill()
            sys.exit(f"{ROUTE} answered {response.status}: {payload[:300]!r}")
        situation = json.loads(payload)["situation"]
        if situation != expected[kind]:
            server.kill()
            sys.exit(f"{kind}: expected {expected[kind]}, got {situation}: {payload[:300]!r}")
        client_ms.setdefault(kind, []).append(elapsed)
        kinds[request_id] = kind

    deadline = time.monotonic() + 10
    while len(server_ms) < len(plan) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.terminate()
    server.wait(timeout=30)

    by_kind: dict[str, list[float]] = {}
    for request_id, elapsed in server_ms:
        if request_id in kinds:
            by_kind.setdefault(kinds[request_id], []).append(elapsed)
    decision_by_kind: dict[str, list[float]] = {}
    for request_id, elapsed in decision_ms:
        if request_id in kinds:
            decision_by_kind.setdefault(kinds[request_id], []).append(elapsed)
    print(f"\n{len(plan):,} sign-in decisions over {args.n:,} users, one keep-alive connection, sequential")
    print(f"command: python3 bench/signin.py --n {args.n} --requests {args.requests}"
          + (f" --pg-url {args.pg_url}" if args.pg_url else ""))
    print("\ndecision + write (App::resolve_sign_in: settings, facts, decision, guarded write, trail):")
    for kind in expected:
        print(f"  {kind:<30} {summary(decision_by_kind.get(kind, []))}")
    all_decision = [e for values in decision_by_kind.values() for e in values]
    print(f"  {'all':<30} {summary(all_decision)}")
    print("\nwhole request, server side (tether's request log: plus token check and JSON):")
    for kind in expected:
        print(f"  {kind:<30} {summary(by_kind.get(kind, []))}")
    all_server = [e for values in by_kind.values() for e in values]
    print(f"  {'all':<30} {summary(all_server)}")
    print("\nclient side (including the loopback round trip):")
    for kind in expected:
        print(f"  {kind:<30} {summary(client_ms.get(kind, []))}")
    all_client = [e for values in client_ms.values() for e in values]
    print(f"  {'all':<30} {summary(all_client)}")
    p99 = percentile(all_decision, 99)
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    print(f"\ntarget: decision + write < {TARGET_P99_MS} ms p99 server side: p99 = {p99:.3f} ms, {verdict} "
          f"(whole request p99 = {percentile(all_server, 99):.3f} ms)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
