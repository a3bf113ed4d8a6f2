#!/usr/bin/env python3
"""Benchmark: the users list of the REST API with N users in the store (issue 3, "Speed").

Loads N users and N accounts (bench/reconcile.py's generator, cached in bench/out/) into a
store with `tether import`, reconciles once so that every user has a stored situation, starts
`tether serve`, and measures, over one keep-alive connection, the latency of

  first page   GET /api/v1/users
  deep page    GET /api/v1/users?after=<pk in the middle>
  filtered     GET /api/v1/users?situation=<s>      (each of no_match, inactive_account,
                                                      duplicate_accounts, linked in turn)
  search       GET /api/v1/users?q=<prefix>          (a rotating set of name/e-mail prefixes)

each --requests times (default 1000). Prints p50/p90/p99/max per kind. Target: p99 < 50 ms.

    cargo build --release -p tether
    python3 bench/users_list.py                                   # SQLite, N = 1,000,000
    python3 bench/users_list.py --database postgres://…/tether_users_list

The store is loaded once and reused by later runs (SQLite: bench/out/users_list-N-SEED.db;
PostgreSQL: whatever --database names; the role needs to own that database). Only the
Python 3 standard library is used.
"""

import argparse
import http.client
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0


def log(msg: str) -> None:
    print(f"[users_list] {msg}", file=sys.stderr, flush=True)


def reconcile_module():
    spec = importlib.util.spec_from_file_location("bench_reconcile", ROOT / "bench" / "reconcile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_reconcile"] = module
    spec.loader.exec_module(module)
    return module


def tether(binary: Path, database: str, *args: str) -> str:
    t0 = time.perf_counter()
    out = subprocess.run([str(binary), "--database", database, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tether {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    log(f"tether {' '.join(args)}: {time.perf_counter() - t0:.1f} s")
    return out.stdout


class Server:
    def __init__(self, binary: Path, database: str):
        self.proc = subprocess.Popen(
            [str(binary), "--database", database, "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin"},
        )
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                if line.startswith("tether: listening on http://"):
                    self.port = int(line.strip().rsplit(":", 1)[1])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(300) or self.port is None:
            self.stop()
            sys.exit("tether serve did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Client:
    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Connection": "keep-alive"}

    def get(self, path: str):
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        ms = (time.perf_counter() - t0) * 1000.0
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status} {body[:300]!r}")
        return ms, json.loads(body)


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--requests", type=int, default=1000, help="requests per kind (default 1000)")
    ap.add_argument("--limit", type=int, default=50, help="page size (default 50, the API's default)")
    ap.add_argument("--database", help="store URL (default sqlite:bench/out/users_list-N-SEED.db)")
    ap.add_argument("--tether", type=Path, default=ROOT / "target" / "release" / "tether")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    if not args.tether.exists():
        sys.exit(f"{args.tether} missing: cargo build --release -p tether")
    database = args.database or f"sqlite:{args.out / f'users_list-{args.n}-{args.seed}.db'}"

    token = tether(args.tether, database, "token", "create", "--name", f"bench-{int(time.time())}",
                   "--scope", "admin").strip().splitlines()[-1]
    server = Server(args.tether, database)
    client = Client(server.port, token)
    _, dashboard = client.get("/api/v1/dashboard")
    if dashboard["users"] < args.n:
        server.stop()
        log(f"loading {args.n} users into {database} (once)")
        data = reconcile_module().generate(args.n, args.seed, args.out)
        tether(args.tether, database, "import", "users", str(data.users_csv))
        tether(args.tether, database, "sources", "add", "bench")
        tether(args.tether, database, "import", "accounts", "--source", "bench", str(data.accounts_csv))
        tether(args.tether, database, "reconcile", "--source", "bench")
        server = Server(args.tether, database)
        client = Client(server.port, token)
        _, dashboard = client.get("/api/v1/dashboard")
    log(f"{dashboard['users']} users; situations {dashboard['situations']}")

    rng = random.Random(7)
    # Search prefixes taken from real users: name, e-mail and id prefixes of random users.
    _, sample = client.get("/api/v1/users?limit=500&after=" + str(rng.randrange(args.n // 2)))
    prefixes = []
    for user in sample["items"]:
        prefixes.append(user["username"][:4])
        if user.get("email"):
            prefixes.append(user["email"][:6].lower())
        prefixes.append(user["display_name"].split(" ")[0][:5])
    prefixes = [p for p in prefixes if len(p) >= 3]
    rng.shuffle(prefixes)
    situations = ["no_match", "inactive_account", "duplicate_accounts", "linked"]
    limit = args.limit
    kinds = {
        "first page": lambda i: f"/api/v1/users?limit={limit}",
        "deep page": lambda i: f"/api/v1/users?limit={limit}&after={rng.randrange(args.n)}",
        "filtered (situation)": lambda i: f"/api/v1/users?limit={limit}&situation={situations[i % len(situations)]}",
        "search (q)": lambda i: f"/api/v1/users?limit={limit}&q={prefixes[i % len(prefixes)]}",
    }
    results = {}
    for kind, path_of in kinds.items():
        for i in range(20):  # warm up
            client.get(path_of(i))
        times = []
        rows = 0
        for i in range(args.requests):
            ms, page = client.get(path_of(i))
            times.append(ms)
            rows += len(page["items"])
        results[kind] = {
            "requests": len(times),
            "mean_rows": rows / len(times),
            "p50_ms": round(statistics.median(times), 2),
            "p90_ms": round(percentile(times, 90), 2),
            "p99_ms": round(percentile(times, 99), 2),
            "max_ms": round(max(times), 2),
        }
        log(f"{kind}: {results[kind]}")
    server.stop()

    if args.json:
        print(json.dumps({"database": database.split("@")[-1], "users": dashboard["users"],
                          "limit": limit, "results": results}, indent=2))
    else:
        store = "PostgreSQL" if database.startswith("postgres") else "SQLite"
        print(f"users list, {store}, {dashboard['users']:,} users, limit {limit}, "
              f"{args.requests} requests per kind, one keep-alive connection")
        print(f"{'kind':<24}{'rows':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}  target p99 < {TARGET_P99_MS:.0f} ms")
        for kind, r in results.items():
            verdict = "ok" if r["p99_ms"] < TARGET_P99_MS else "MISS"
            print(f"{kind:<24}{r['mean_rows']:>6.0f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}  {verdict}")
        print(f"command: python3 bench/users_list.py --n {args.n} --requests {args.requests}"
              + (f" --database {database.split('@')[-1]}" if args.database else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
