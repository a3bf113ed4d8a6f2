#!/usr/bin/env python3
"""tether SCIM benchmark: GET /Users/{id} and GET /Users?filter=userName eq "…" with wrk.

Generates N users (default 1,000,000), imports them with `tether import users` into a fresh
SQLite database, serves them with `tether serve` (release build), and measures, with wrk at
8 connections (-t2 -c8 -d10s --latency) and a Lua script that rotates over many ids and
userNames (in another case than stored, as provisioning clients search):

  1. GET /scim/v2/Users/{id}
  2. GET /scim/v2/Users?filter=userName eq "…"

then does the same against PyPI scim2-server ($TETHER_PEERS_BIN/scim2-server, in memory),
seeded over HTTP with --peer-users users (default 10,000: seeding a Python server with a
million users over HTTP takes hours). Prints requests/s and p99 for both, and the targets of
issue 6 (tether: >= 15,000 req/s and p99 < 5 ms). Python 3 standard library only.

See bench/README.md ("SCIM").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RPS = 15_000.0
TARGET_P99_MS = 5.0
ROTATE = 20_000  # distinct ids / names each Lua script rotates over

LUA = """
local paths = {}
local headers = {["Authorization"] = "Bearer %(token)s", ["Accept"] = "application/scim+json"}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], headers)
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\\n")
  end
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_row(n: int) -> tuple[str, str, str]:
    """id, username (mixed case), e-mail of user n."""
    return (f"u{n:07d}", f"User.{n:07d}@Example.COM", f"user.{n:07d}@example.com")


def generate(n: int, out: Path) -> Path:
    path = out / f"scim-users-{n}.csv"
    if path.exists():
        return path
    log(f"generating {n} users into {path}")
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("id,username,email,display_name,active,external_id\n")
        for i in range(n):
            uid, username, email = user_row(i)
            f.write(f"{uid},{username},{email},User {i},true,\n")
    tmp.rename(path)
    return path


def request(url: str, token: str, method: str = "GET", body=None, timeout: float = 600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/scim+json")
    with urllib.request.urlopen(req, timeout=timeout) as response:
        text = response.read()
        return response.status, (json.loads(text) if text else None)


def wait_for(url: str, token: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            request(url, token, timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not answer in time")


def wrk(base: str, paths: list[str], token: str, out: Path, name: str, args) -> dict:
    paths_file = out / f"{name}.paths"
    paths_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
    script = out / f"{name}.lua"
    script.write_text(LUA % {"token": token, "paths": str(paths_file)}, encoding="utf-8")
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
               "--latency", "-s", str(script), base]
    log("  " + " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    text = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = parse_latency(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p99_ms": p99, "non_2xx": errors, "wrk": text}


def parse_latency(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_tether(args, out: Path) -> dict:
    binary = Path(args.tether)
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: cargo build --release -p tether")
    users_csv = generate(args.n, out)
    db = out / f"scim-{args.n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:{db}"
    log(f"importing {args.n} users into {db}")
    started = time.monotonic()
    subprocess.run([str(binary), "--database", url, "import", "users", str(users_csv)],
                   check=True, stdout=subprocess.DEVNULL)
    log(f"  import took {time.monotonic() - started:.1f} s")
    token = subprocess.run([str(binary), "--database", url, "token", "create", "--name", "bench",
                            "--scope", "scim"], check=True, capture_output=True,
                           text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([str(binary), "--database", url, "serve", "--listen",
                               f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/scim/v2/ServiceProviderConfig", token, time.monotonic() + 60)
        # The first userName lookup computes the Unicode lower-case keys of the imported
        # users (once); it is not part of the measurement.
        started = time.monotonic()
        _, found = request(f"{base}/scim/v2/Users?filter=" +
                           urllib.request.quote('userName eq "user.0000001@example.com"'), token)
        assert found["totalResults"] == 1, found
        log(f"  first userName lookup (fills the keys of {args.n} users): "
            f"{time.monotonic() - started:.1f} s")
        rng = random.Random(7)
        picks = [rng.randrange(args.n) for _ in range(ROTATE)]
        by_id = [f"/scim/v2/Users/{user_row(i)[0]}" for i in picks]
        by_name = ["/scim/v2/Users?filter=" + urllib.request.quote(
            f'userName eq "{user_row(i)[1].lower()}"') for i in picks]
        return {
            "users": args.n,
            "get_by_id": wrk(base, by_id, token, out, "tether-id", args),
            "filter_username": wrk(base, by_name, token, out, "tether-name", args),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_peer(args, out: Path) -> dict | None:
    peers = os.environ.get("TETHER_PEERS_BIN")
    if not peers:
        log("TETHER_PEERS_BIN is not set: eval the last line of scripts/peers/install; "
            "skipping scim2-server")
        return None
    binary = Path(peers) / "scim2-server"
    port = free_port()
    token = "bench-token"
    server = subprocess.Popen([str(binary), "--port", str(port), "--bearer-token", token],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/ServiceProviderConfig", token, time.monotonic() + 60)
        log(f"seeding scim2-server with {args.peer_users} users over HTTP")
        started = time.monotonic()
        ids = []
        batch = 500
        for start in range(0, args.peer_users, batch):
            operations = [{
                "method": "POST", "path": "/Users", "bulkId": str(i),
                "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                         "userName": user_row(i)[1],
                         "emails": [{"value": user_row(i)[2], "primary": True}]},
            } for i in range(start, min(start + batch, args.peer_users))]
            _, answer = request(f"{base}/Bulk", token, "POST", {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": operations})
            for operation in answer["Operations"]:
                ids.append(operation["location"].rsplit("/", 1)[-1])
        log(f"  seeding took {time.monotonic() - started:.1f} s")
        rng = random.Random(7)
        picks = [rng.randrange(len(ids)) for _ in range(ROTATE)]
        by_id = [f"/Users/{ids[i]}" for i in picks]
        by_name = ["/Users?filter=" + urllib.request.quote(
            f'userName eq "{user_row(i)[1].lower()}"') for i in picks]
        return {
            "users": args.peer_users,
            "get_by_id": wrk(base, by_id, token, out, "peer-id", args),
            "filter_username": wrk(base, by_name, token, out, "peer-name", args),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="users in tether's store")
    parser.add_argument("--peer-users", type=int, default=10_000,
                        help="users seeded into scim2-server")
    parser.add_argument("--tether", default=str(ROOT / "target/release/tether"))
    parser.add_argument("--out", default=str(ROOT / "bench/out"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"tether": run_tether(args, out), "scim2_server": run_peer(args, out)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
          f"(rotating over {ROTATE} ids / userNames)")
    print(f"{'server':<14} {'users':>9} {'request':<34} {'req/s':>9} {'p99 ms':>8} {'non-2xx':>8}")
    for name, result in results.items():
        if result is None:
            continue
        for kind, label in (("get_by_id", "GET /Users/{id}"),
                            ("filter_username", 'GET /Users?filter=userName eq "…"')):
            r = result[kind]
            verdict = ""
            if name == "tether":
                ok = r["rps"] >= TARGET_RPS and r["p99_ms"] < TARGET_P99_MS
                verdict = "ok" if ok else f"MISS (target >= {TARGET_RPS:.0f} req/s, p99 < {TARGET_P99_MS} ms)"
            print(f"{name:<14} {result['users']:>9} {label:<34} {r['rps']:>9.0f} "
                  f"{r['p99_ms']:>8.2f} {r['non_2xx']:>8}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
