#!/usr/bin/env python3
"""tether reconcile benchmark: tether against what a DBA would run instead.

Generates N users and N directory accounts deterministically, then for each store
(SQLite, PostgreSQL), in one run:

  (a) baseline bulk load of the CSVs into a fresh database with tether's own schema
  (b) `tether import users` + `tether import accounts` into another fresh database
  (c) the DBA's bare SQL on a copy of (b): index on lower(email) + one UPDATE ... FROM
  (d) `tether reconcile --source bench --format json` on (b)
  (e) a second `tether reconcile` that must write nothing

and prints the times, the ratios against the issue's targets, peak memory and checks.
See bench/README.md. Python 3 standard library only; PostgreSQL through the `psql` client.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
import random
import re

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 3
SOURCE = "bench"

# Targets from issue 2 ("Speed"), at N = 1,000,000.
TARGET_RECONCILE = 1.0  # reconcile / bare SQL
TARGET_NOOP = 0.5  # second reconcile / bare SQL
TARGET_IMPORT = 1.0  # tether import / bulk load
TARGET_RSS_MIB = 1024.0  # peak RSS of any tether process

# Shares of N, as issue 2 asks.
SHARE_MATCHED = 0.95  # users with an account whose e-mail matches
SHARE_LINKED = 0.02  # users already carrying their account's account_id
SHARE_INACTIVE = 0.005  # accounts deactivated (each one a matched user's only account)
SHARE_DUPLICATE = 0.001  # e-mails held by two directory accounts
SHARE_UPPER = 0.01  # user e-mails with upper-case letters


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------
# Data generation
# ------------------------------------------------------------------------------------------

FIRST = """
james mary robert patricia john jennifer michael linda david elizabeth william barbara richard
susan joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty
anthony margaret mark sandra donald ashley steven kimberly paul emily andrew donna joshua
michelle kenneth carol kevin amanda brian dorothy george melissa timothy deborah ronald
stephanie edward rebecca jason sharon jeffrey laura ryan cynthia jacob kathleen gary amy
nicholas angela eric shirley jonathan anna stephen brenda larry pamela justin emma scott
nicole brandon helen benjamin samantha samuel katherine gregory christine alexander debra
frank rachel patrick carolyn raymond janet jack catherine dennis maria jerry heather tyler
diane aaron ruth jose julie adam olivia nathan joyce henry virginia douglas victoria zachary
kelly peter lauren kyle christina ethan joan walter evelyn noah judith jeremy megan christian
andrea keith cheryl roger hannah terry jacqueline gerald martha harold gloria sean teresa
austin ann carl sara arthur madison lawrence frances dylan kathryn jesse janice jordan jean
bryan abigail billy alice joe julia bruce judy gabriel sophia logan grace albert denise
willie amber alan doris juan marilyn wayne danielle elijah beverly randy isabella roy theresa
vincent diana ralph natalie eugene brittany russell charlotte bobby marie mason kayla philip
alexis louis lori priya wei yuki lars ingrid sven anika mateo lucia omar fatima arjun mei
hiroshi sakura ivan olga pierre camille giulia marco sofia luca chloe felix hanna jonas
""".split()

LAST = """
smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez
gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris
sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill
flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez phillips
evans turner diaz parker cruz edwards collins reyes stewart morris morales murphy cook rogers
gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox ward richardson
watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan bell
coleman butler henderson barnes gonzales fisher vasquez simmons romero jordan patterson
alexander hamilton graham reynolds griffin wallace moreno west cole hayes bryant herrera
gibson ellis tran medina aguilar stevens murray ford castro marshall owens harrison fernandez
mcdonald woods washington kennedy wells vargas henry chen freeman webb tucker guzman burns
crawford olson simpson porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt
hicks holmes palmer wagner black robertson boyd rose stone salazar fox warren mills meyer
rice schmidt garza daniels ferguson nichols stephens soto weaver ryan gardner payne grant
dunn kelley spencer hawkins arnold pierce vazquez hansen peters santos hart bradley knight
elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado
berry perkins hoffman johnston matthews pena richards contreras willis carpenter lawrence
sandoval mueller schneider fischer weber becker schulz wagner koch richter klein wolf
schroeder neumann rossi russo ferrari esposito bianchi romano colombo ricci tanaka suzuki
takahashi watanabe ito yamamoto nakamura kobayashi sato kato wang li zhang liu chen yang
huang zhao wu zhou xu sun ma zhu hu guo he lin luo kumar singh sharma gupta shah mehta
iyer reddy nair andersson johansson karlsson nilsson eriksson larsson olsen hansen jensen
nielsen kowalski nowak wisniewski dubois durand leroy moreau laurent lefebvre michel
""".split()

DOMAIN_A = """
acme globex initech umbrella hooli vandelay stark wayne wonka cyberdyne tyrell soylent
northwind contoso fabrikam tailspin adventure litware proseware wingtip lucerne margie
alpine blue red green silver golden iron stone river lake ocean summit peak harbor bridge
pine oak maple cedar nova astra vertex apex orbit quantum pixel byte cloud data logic
""".split()
DOMAIN_B = """
corp labs group systems tech works industries solutions partners health bank energy
logistics media retail foods motors capital consulting software networks analytics
""".split()
TLDS = ["com"] * 12 + ["org", "net", "io", "co.uk", "de", "fr", "com.au", "ca", "nl", "se",
                       "ch", "co", "dev", "ai", "eu", "co.jp", "in", "es", "it"]


def make_domains(rng: random.Random, count: int) -> list[str]:
    domains: list[str] = []
    seen: set[str] = set()
    while len(domains) < count:
        a, b = rng.choice(DOMAIN_A), rng.choice(DOMAIN_B)
        style = rng.random()
        if style < 0.5:
            name = a + b
        elif style < 0.7:
            name = f"{a}-{b}"
        elif style < 0.85:
            name = a
        else:
            name = f"{rng.choice(['eu', 'us', 'mail', 'corp', 'uk', 'apac'])}.{a}{b}"
        domain = f"{name}.{rng.choice(TLDS)}"
        if domain not in seen:
            seen.add(domain)
            domains.append(domain)
    return domains


def local_part(rng: random.Random, first: str, last: str) -> str:
    p = rng.random()
    if p < 0.45:
        return f"{first}.{last}"
    if p < 0.60:
        return f"{first[0]}{last}"
    if p < 0.70:
        return f"{first}{last}"
    if p < 0.77:
        return f"{first}_{last}"
    if p < 0.84:
        return f"{first}.{last[0]}"
    if p < 0.90:
        return f"{last}.{first}"
    if p < 0.95:
        return f"{first}-{last}"
    return first


def upper_variant(rng: random.Random, email: str) -> str:
    """The same mailbox as typed by someone who likes capitals."""
    local, domain = email.split("@", 1)
    p = rng.random()
    if p < 0.5:
        local = ".".join(w[:1].upper() + w[1:] for w in local.split("."))
    elif p < 0.7:
        domain = domain[:1].upper() + domain[1:]
        local = local[:1].upper() + local[1:]
    elif p < 0.85:
        local, domain = local.upper(), domain.upper()
    else:
        domain = domain.upper()
    out = f"{local}@{domain}"
    if out == email:  # e.g. local part starting with a digit: force a capital somewhere
        out = f"{local}@{domain.upper()}"
    return out


def account_id(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"{rng.getrandbits(96):024x}"  # modern AAID: 24 hex digits
    return "557058:" + str(uuid.UUID(int=rng.getrandbits(128), version=4))  # legacy AAID


@dataclass
class Dataset:
    n: int
    seed: int
    users_csv: Path
    accounts_csv: Path
    expected: dict  # situation -> count, for the first reconcile
    stats: dict


def generate(n: int, seed: int, out: Path) -> Dataset:
    out.mkdir(parents=True, exist_ok=True)
    users_csv = out / f"users-{n}-{seed}.csv"
    accounts_csv = out / f"accounts-{n}-{seed}.csv"
    manifest = out / f"manifest-{n}-{seed}.json"
    if manifest.exists() and users_csv.exists() and accounts_csv.exists():
        meta = json.loads(manifest.read_text())
        if meta.get("generator") == GENERATOR_VERSION:
            log(f"reusing generated data {users_csv.name}, {accounts_csv.name}")
            return Dataset(n, seed, users_csv, accounts_csv, meta["expected"], meta["stats"])

    t0 = time.perf_counter()
    log(f"generating {n:,} users and {n:,} accounts (seed {seed})")
    rng = random.Random(seed)
    domains = make_domains(rng, 320)
    # Zipf-like weights: a few big companies, a long tail.
    cum, total = [], 0.0
    for rank in range(1, len(domains) + 1):
        total += 1.0 / rank**1.05
        cum.append(total)

    taken: set[str] = set()  # lower-case e-mails in use, users and directory alike
    usernames: set[str] = set()

    def fresh_email(first: str, last: str) -> str:
        domain = rng.choices(domains, cum_weights=cum)[0]
        base = local_part(rng, first, last)
        email = f"{base}@{domain}"
        tries = 0
        while email in taken:
            tries += 1
            width = 99 if tries < 5 else 9999 if tries < 20 else 999999
            email = f"{base}{rng.randint(2, width)}@{domain}"
        taken.add(email)
        return email

    # Users: (id, username, email as typed, canonical lower-case email, display name)
    users = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = fresh_email(first, last)
        username = email.split("@", 1)[0]
        if username in usernames:
            username = f"{username}{i}"
        usernames.add(username)
        typed = upper_variant(rng, email) if rng.random() < SHARE_UPPER else email
        users.append([str(100000 + i), username, typed, email, f"{first.title()} {last.title()}"])

    m = round(SHARE_MATCHED * n)
    n_linked = round(SHARE_LINKED * n)
    n_inactive = round(SHARE_INACTIVE * n)
    n_dup = round(SHARE_DUPLICATE * n)
    perm = list(range(n))
    rng.shuffle(perm)
    matched = perm[:m]
    linked = set(perm[:n_linked])
    inactive = set(perm[n_linked:n_linked + n_inactive])
    dup = perm[n_linked + n_inactive:n_linked + n_inactive + n_dup]

    ids: set[str] = set()

    def fresh_id() -> str:
        while True:
            value = account_id(rng)
            if value not in ids:
                ids.add(value)
                return value

    # Accounts: (account_id, username, key, email, display_name, active, account_type)
    accounts = []
    external = {}
    for u in matched:
        _, username, _, email, name = users[u]
        aid = fresh_id()
        if u in linked:
            external[u] = aid
        accounts.append([aid, email.split("@", 1)[0], "", email, name,
                         "false" if u in inactive else "true", "atlassian"])
    for u in dup:  # a second, active directory account with the same e-mail
        _, _, _, email, name = users[u]
        accounts.append([fresh_id(), email.split("@", 1)[0] + "2", "", email, name, "true", "atlassian"])
    extra = n - m - n_dup  # directory-only: people without a profile, bots, customers
    for _ in range(extra):
        p = rng.random()
        if p < 0.15:
            accounts.append([fresh_id(), "", "", "", f"Automation bot {rng.randint(1, 99999)}", "true", "app"])
            continue
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = fresh_email(first, last)
        kind = "customer" if p < 0.35 else "atlassian"
        active = "false" if rng.random() < 0.05 else "true"
        accounts.append([fresh_id(), email.split("@", 1)[0], "", email,
                         f"{first.title()} {last.title()}", active, kind])
    rng.shuffle(accounts)

    with users_csv.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "username", "email", "display_name", "active", "external_id"])
        for i, (uid, username, typed, _, name) in enumerate(users):
            w.writerow([uid, username, typed, name, "true", external.get(i, "")])
    with accounts_csv.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["account_id", "username", "key", "email", "display_name", "active", "account_type"])
        w.writerows(accounts)

    expected = {
        "linked": n_linked,
        "inactive_account": n_inactive,
        "duplicate_accounts": n_dup,
        "no_match": n - m,
        "new_link": m - n_linked - n_inactive - n_dup,
    }
    expected = {k: v for k, v in expected.items() if v}
    stats = {
        "users": n,
        "accounts": len(accounts),
        "domains": len(domains),
        "users_with_upper_case_email": sum(1 for u in users if u[2] != u[3]),
        "inactive_accounts": sum(1 for a in accounts if a[5] == "false"),
        "accounts_without_email": sum(1 for a in accounts if not a[3]),
    }
    manifest.write_text(json.dumps({"generator": GENERATOR_VERSION, "n": n, "seed": seed,
                                    "expected": expected, "stats": stats}, indent=2))
    log(f"generated in {time.perf_counter() - t0:.1f} s: {stats}")
    return Dataset(n, seed, users_csv, accounts_csv, expected, stats)


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------

@dataclass
class Child:
    argv: list
    rc: int
    seconds: float
    rss_mib: float
    stdout: str
    stderr: str


def run_child(argv: list, check: bool = True, stdin_path: Path | None = None) -> Child:
    """Runs a process; wall time and its own peak RSS (wait4 rusage of that one child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=stdin)
            _, status, usage = os.wait4(p.pid, 0)
            seconds = time.perf_counter() - t0
        finally:
            if stdin_path:
                stdin.close()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        child = Child([str(a) for a in argv], p.returncode, seconds, usage.ru_maxrss / 1024.0,
                      out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
    if check and child.rc != 0:
        raise BenchError(f"command failed (exit {child.rc}): {' '.join(child.argv)}\n"
                         f"stdout: {child.stdout[-3000:]}\nstderr: {child.stderr[-3000:]}")
    return child


class BenchError(Exception):
    pass


LOADS: list = []  # 1-minute load average at the start of each timed step


def settle() -> None:
    """Untimed: flush earlier steps' dirty pages so they are not billed to the next step."""
    os.sync()
    LOADS.append(os.getloadavg()[0])


# ------------------------------------------------------------------------------------------
# Stores
# ------------------------------------------------------------------------------------------

def migration_files(migrations: Path, dialect: str) -> list[Path]:
    folder = migrations / dialect
    files = sorted(folder.glob("*.sql")) if folder.is_dir() else []
    if not files:
        raise BenchError(f"no migrations in {folder}: the baseline needs tether's own schema")
    return files


class SqliteBench:
    name = "sqlite"

    def __init__(self, out: Path, migrations: Path, pragmas: str):
        self.dir = out / "sqlite"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.migrations = migration_files(migrations, "sqlite")
        # The baselines' connection settings: by default the ones tether's store sets on its
        # own connections (read from its source, so the comparison stays like for like);
        # with --sqlite-pragmas defaults, SQLite's defaults plus WAL.
        self.pragmas = tether_sqlite_pragmas() if pragmas == "tether" else [("journal_mode", "WAL")]

    def path(self, db: str) -> Path:
        return self.dir / f"{db}.db"

    def url(self, db: str) -> str:
        return f"sqlite:{self.path(db)}"

    def fresh(self, db: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = Path(str(self.path(db)) + suffix)
            if p.exists():
                p.unlink()

    def connect(self, db: str) -> sqlite3.Connection:
        con = sqlite3.connect(self.path(db), isolation_level=None)
        for name, value in self.pragmas:
            con.execute(f"PRAGMA {name} = {value}")
        return con

    def describe(self) -> str:
        pragmas = ", ".join(f"{k}={v}" for k, v in self.pragmas if k in SHOWN_PRAGMAS)
        return f"SQLite {sqlite3.sqlite_version}; baselines via python sqlite3 with {pragmas}"

    # (a) -----------------------------------------------------------------------------------
    def bulk_load(self, db: str, data: Dataset) -> float:
        self.fresh(db)
        con = self.connect(db)  # untimed: the schema, as tether creates it before an import
        for f in self.migrations:
            con.executescript(f.read_text())
        con.close()
        settle()
        t0 = time.perf_counter()
        con = self.connect(db)
        con.execute("BEGIN")
        at = now_rfc3339()
        cur = con.execute("INSERT INTO sources (name, kind, external_id_field, link_inactive, created_at)"
                          " VALUES (?, 'file', 'account_id', 0, ?)", (SOURCE, at))
        source_pk = cur.lastrowid

        def user_rows():
            with data.users_csv.open(newline="") as f:
                r = csv.reader(f)
                next(r)
                for uid, username, email, name, active, ext in r:
                    email = email.strip() or None
                    yield (uid, username, email, email.lower() if email else None, name,
                           1 if active == "true" else 0, ext or None,
                           "import" if ext else None, at if ext else None)

        def account_rows():
            with data.accounts_csv.open(newline="") as f:
                r = csv.reader(f)
                next(r)
                for aid, username, key, email, name, active, kind in r:
                    email = email.strip() or None
                    yield (source_pk, aid, username or None, key or None, email,
                           email.lower() if email else None, name, 1 if active == "true" else 0, kind)

        con.executemany("INSERT INTO users (id, username, email, email_key, display_name, active,"
                        " external_id, external_id_origin, external_id_set_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", user_rows())
        con.executemany("INSERT INTO accounts (source_pk, account_id, username, key, email, email_key,"
                        " display_name, active, account_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        account_rows())
        con.execute("COMMIT")
        con.close()
        return time.perf_counter() - t0

    # (c) -----------------------------------------------------------------------------------
    def copy(self, src: str, dst: str) -> None:
        self.fresh(dst)
        for suffix in ("", "-wal"):
            p = Path(str(self.path(src)) + suffix)
            if p.exists():
                shutil.copyfile(p, str(self.path(dst)) + suffix)

    def dba_sql(self) -> list[str]:
        return [
            "CREATE INDEX accounts_lower_email ON accounts (lower(email))",
            "UPDATE users SET external_id = a.account_id FROM accounts a"
            " WHERE lower(users.email) = lower(a.email) AND a.active = 1 AND users.external_id IS NULL"
            " AND lower(a.email) IN (SELECT lower(email) FROM accounts WHERE active = 1"
            " GROUP BY lower(email) HAVING count(*) = 1)",
        ]

    def dba(self, db: str) -> tuple[float, int, str]:
        con = self.connect(db)
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        settle()
        t0 = time.perf_counter()
        con.execute("BEGIN")
        index_sql, update_sql = self.dba_sql()
        con.execute(index_sql)
        rows = con.execute(update_sql).rowcount
        con.execute("COMMIT")
        seconds = time.perf_counter() - t0
        con.close()
        return seconds, rows, mode

    # checks --------------------------------------------------------------------------------
    def table_digest(self, db: str, table: str) -> tuple[int, str]:
        """Row count and an order-independent digest of every column of every row."""
        con = self.connect(db)
        count, acc = 0, 0
        for row in con.execute(f"SELECT * FROM {table}"):
            count += 1
            acc = (acc + int.from_bytes(hashlib.blake2b(repr(row).encode(), digest_size=8).digest(), "little")) % (1 << 64)
        con.close()
        return count, f"{acc:016x}"

    def scalar(self, db: str, sql: str):
        con = self.connect(db)
        value = con.execute(sql).fetchone()[0]
        con.close()
        return value

    def links(self, db: str) -> dict:
        con = self.connect(db)
        out = dict(con.execute("SELECT id, external_id FROM users WHERE external_id IS NOT NULL"))
        con.close()
        return out

    def analyze(self, db: str) -> None:
        pass  # SQLite plans these statements well without statistics

    def size_mib(self, db: str) -> float:
        return sum(Path(str(self.path(db)) + s).stat().st_size for s in ("", "-wal")
                   if Path(str(self.path(db)) + s).exists()) / 2**20


SHOWN_PRAGMAS = ("journal_mode", "synchronous", "cache_size", "temp_store", "mmap_size")


def tether_sqlite_pragmas() -> list:
    """The PRAGMAs tether's SQLite store sets when it connects (crates/tether-store/src/sqlite.rs)."""
    src = ROOT / "crates" / "tether-store" / "src" / "sqlite.rs"
    found = re.findall(r"PRAGMA\s+(\w+)\s*=\s*([\w-]+)\s*;", src.read_text()) if src.exists() else []
    if not found:
        log("could not read tether's SQLite PRAGMAs: using WAL, synchronous NORMAL, cache 128 MiB")
        found = [("journal_mode", "WAL"), ("synchronous", "NORMAL"), ("cache_size", "-131072"),
                 ("temp_store", "MEMORY")]
    seen, out = set(), []
    for name, value in found:
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append((name.lower(), value))
    return out


class PgBench:
    name = "postgres"

    def __init__(self, out: Path, migrations: Path, base_url: str):
        self.dir = out / "postgres"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.migrations = migration_files(migrations, "postgres")
        self.base_url = base_url
        self.prefix = "tether_bench_"
        self._types: dict = {}

    def url(self, db: str) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + self.prefix + db))

    def psql(self, url: str, sql: str | None = None, file: Path | None = None, check: bool = True,
             tuples: bool = True) -> Child:
        argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", url]
        if tuples:
            argv += ["-q", "-A", "-t"]
        if sql is not None:
            argv += ["-c", sql]
        if file is not None:
            argv += ["-f", str(file)]
        return run_child(argv, check=check)

    def describe(self) -> str:
        version = self.psql(self.base_url, "SHOW server_version").stdout.strip()
        settings = self.psql(self.base_url, "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)"
                             " FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',"
                             " 'shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_wal_size',"
                             " 'wal_level', 'full_page_writes')").stdout.strip()
        return f"PostgreSQL {version} ({settings})"

    def fresh(self, db: str, template: str | None = None) -> None:
        name = self.prefix + db
        self.psql(self.base_url, f'DROP DATABASE IF EXISTS "{name}"')
        if template:
            self.psql(self.base_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.prefix + template}"')
        else:
            self.psql(self.base_url, f'CREATE DATABASE "{name}"')

    def checkpoint(self) -> None:
        self.psql(self.base_url, "CHECKPOINT")

    def col_types(self, db: str, table: str) -> dict:
        key = table
        if key not in self._types:
            out = self.psql(self.url(db), "SELECT column_name || '|' || data_type FROM information_schema.columns"
                            f" WHERE table_schema = current_schema() AND table_name = '{table}'").stdout
            self._types[key] = dict(line.split("|", 1) for line in out.split("\n") if "|" in line)
        return self._types[key]

    @staticmethod
    def as_bool(col_type: str, text_expr: str) -> str:
        if col_type == "boolean":
            return f"({text_expr})::boolean"
        return f"(CASE WHEN ({text_expr})::boolean THEN 1 ELSE 0 END)"

    @staticmethod
    def as_time(col_type: str) -> str:
        if col_type.startswith("timestamp"):
            return "now()"
        return "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

    def true_test(self, db: str, expr: str, table: str = "accounts", col: str = "active") -> str:
        return expr if self.col_types(db, table).get(col) == "boolean" else f"{expr} = 1"

    # (a) -----------------------------------------------------------------------------------
    def bulk_load(self, db: str, data: Dataset) -> float:
        self.fresh(db)
        for f in self.migrations:  # untimed, as for SQLite the schema is part of the file
            self.psql(self.url(db), file=f)
        ut, at, st = self.col_types(db, "users"), self.col_types(db, "accounts"), self.col_types(db, "sources")
        script = self.dir / "bulk_load.sql"
        script.write_text(f"""
BEGIN;
INSERT INTO sources (name, kind, external_id_field, link_inactive, created_at)
VALUES ('{SOURCE}', 'file', 'account_id', {self.as_bool(st['link_inactive'], "'false'")}, {self.as_time(st['created_at'])});
CREATE TEMP TABLE users_in (id text, username text, email text, display_name text, active text, external_id text) ON COMMIT DROP;
\\copy users_in FROM '{data.users_csv}' WITH (FORMAT csv, HEADER true)
INSERT INTO users (id, username, email, email_key, display_name, active, external_id, external_id_origin, external_id_set_at)
SELECT id, username, nullif(btrim(email), ''), lower(nullif(btrim(email), '')), display_name,
       {self.as_bool(ut['active'], 'active')}, nullif(external_id, ''),
       CASE WHEN nullif(external_id, '') IS NOT NULL THEN 'import' END,
       CASE WHEN nullif(external_id, '') IS NOT NULL THEN {self.as_time(ut['external_id_set_at'])} END
FROM users_in;
CREATE TEMP TABLE accounts_in (account_id text, username text, key text, email text, display_name text, active text, account_type text) ON COMMIT DROP;
\\copy accounts_in FROM '{data.accounts_csv}' WITH (FORMAT csv, HEADER true)
INSERT INTO accounts (source_pk, account_id, username, key, email, email_key, display_name, active, account_type)
SELECT (SELECT pk FROM sources WHERE name = '{SOURCE}'), account_id, nullif(username, ''), nullif(key, ''),
       nullif(btrim(email), ''), lower(nullif(btrim(email), '')), coalesce(display_name, ''),
       {self.as_bool(at['active'], 'active')}, account_type
FROM accounts_in;
COMMIT;
""")
        self.checkpoint()
        settle()
        return self.psql(self.url(db), file=script).seconds

    # (c) -----------------------------------------------------------------------------------
    def copy(self, src: str, dst: str) -> None:
        self.fresh(dst, template=src)

    def dba_sql(self, db: str) -> list[str]:
        active = self.true_test(db, "a.active")
        active2 = self.true_test(db, "active")
        return [
            "CREATE INDEX accounts_lower_email ON accounts (lower(email))",
            "UPDATE users SET external_id = a.account_id FROM accounts a"
            f" WHERE lower(users.email) = lower(a.email) AND {active} AND users.external_id IS NULL"
            f" AND lower(a.email) IN (SELECT lower(email) FROM accounts WHERE {active2}"
            " GROUP BY lower(email) HAVING count(*) = 1)",
        ]

    def dba(self, db: str) -> tuple[float, int, str]:
        index_sql, update_sql = self.dba_sql(db)
        script = self.dir / "dba.sql"
        script.write_text(f"BEGIN;\n{index_sql};\n{update_sql};\nCOMMIT;\n")
        self.checkpoint()
        settle()
        child = self.psql(self.url(db), file=script, tuples=False)
        rows = -1
        for line in child.stdout.splitlines():
            if line.startswith("UPDATE "):
                rows = int(line.split()[1])
        return child.seconds, rows, "-"

    # checks --------------------------------------------------------------------------------
    def table_digest(self, db: str, table: str) -> tuple[int, str]:
        out = self.psql(self.url(db), f"SELECT count(*) || '|' || coalesce(sum(hashtextextended(t::text, 0)), 0)"
                        f" FROM {table} t").stdout.strip()
        count, digest = out.split("|", 1)
        return int(count), digest

    def scalar(self, db: str, sql: str):
        out = self.psql(self.url(db), sql).stdout.strip()
        try:
            return int(out)
        except ValueError:
            return out

    def links(self, db: str) -> dict:
        out = self.psql(self.url(db), "SELECT id || E'\\t' || external_id FROM users WHERE external_id IS NOT NULL").stdout
        return dict(line.split("\t", 1) for line in out.split("\n") if line)

    def analyze(self, db: str) -> None:
        self.psql(self.url(db), "ANALYZE")

    def size_mib(self, db: str) -> float:
        return int(self.psql(self.url(db), "SELECT pg_database_size(current_database())").stdout.strip()) / 2**20

    def before_timed(self) -> None:
        self.checkpoint()


# ------------------------------------------------------------------------------------------
# A throwaway PostgreSQL cluster
# ------------------------------------------------------------------------------------------

class Cluster:
    """Uses scripts/pg-cluster.sh when present; otherwise initdb + pg_ctl as user postgres."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.script = ROOT / "scripts" / "pg-cluster.sh"
        self.own = False

    def start(self) -> str:
        if self.folder.exists():
            self.stop(quiet=True)
            shutil.rmtree(self.folder, ignore_errors=True)
        if self.script.exists():
            log(f"starting PostgreSQL with {self.script.relative_to(ROOT)} start {self.folder}")
            child = run_child(["bash", str(self.script), "start", str(self.folder)])
            lines = [l.strip() for l in child.stdout.splitlines() if l.strip()]
            if not lines or "://" not in lines[-1]:
                raise BenchError(f"pg-cluster.sh printed no URL: {child.stdout!r} {child.stderr!r}")
            return lines[-1]
        self.own = True
        log(f"starting PostgreSQL (initdb + pg_ctl) in {self.folder}")
        self.folder.mkdir(parents=True)
        as_pg = []
        if os.geteuid() == 0:
            as_pg = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip() or
                      "/usr/lib/postgresql/15/bin") if shutil.which("pg_config") else Path("/usr/lib/postgresql/15/bin")
        initdb = shutil.which("initdb") or str(bindir / "initdb")
        pg_ctl = shutil.which("pg_ctl") or str(bindir / "pg_ctl")
        self.pg_ctl = as_pg + [pg_ctl]
        run_child(as_pg + [initdb, "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust",
                           "-E", "UTF8", "--locale=C.UTF-8"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        run_child(self.pg_ctl + ["-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"), "-w",
                                 "-o", f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1", "start"])
        return f"postgres://postgres@127.0.0.1:{port}/postgres"

    def stop(self, quiet: bool = False) -> None:
        try:
            if self.script.exists() and not self.own:
                run_child(["bash", str(self.script), "stop", str(self.folder)], check=not quiet)
            elif self.own or (self.folder / "data" / "postmaster.pid").exists():
                argv = (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + \
                       [shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl"]
                run_child(argv + ["-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"], check=not quiet)
        except BenchError as e:
            if not quiet:
                log(f"stopping PostgreSQL failed: {e}")


# ------------------------------------------------------------------------------------------
# One store
# ------------------------------------------------------------------------------------------

def run_store(store, data: Dataset, tether: Path | None) -> dict:
    res: dict = {}
    try:
        _run_store(store, data, tether, res)
    except BenchError as e:
        log(f"{store.name}: ERROR: {e}")
        res.setdefault("checks", []).append({"check": "benchmark ran to the end", "ok": False, "detail": str(e)})
        res["ok"] = False
    res["load_before_steps"] = [round(x, 2) for x in LOADS]
    return res


def _run_store(store, data: Dataset, tether: Path | None, res: dict) -> dict:
    res |= {"store": store.name, "n": data.n, "engine": store.describe(), "steps": {}, "checks": [],
            "ok": True, "load_before_steps": []}
    LOADS.clear()
    steps = res["steps"]

    def check(name: str, ok: bool, detail: str) -> None:
        res["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
        if not ok:
            res["ok"] = False
        log(f"{store.name}: check {name}: {'ok' if ok else 'FAILED'} ({detail})")

    # (a) baseline bulk load
    log(f"{store.name}: (a) baseline bulk load")
    steps["bulk_load"] = {"seconds": store.bulk_load("base", data)}
    base_users = store.scalar("base", "SELECT count(*) FROM users")
    base_accounts = store.scalar("base", "SELECT count(*) FROM accounts")
    check("bulk load row counts", base_users == data.n and base_accounts == data.stats["accounts"],
          f"{base_users} users, {base_accounts} accounts")
    log(f"{store.name}: (a) {steps['bulk_load']['seconds']:.2f} s, {store.size_mib('base'):.0f} MiB")

    if tether is None:
        log(f"{store.name}: no tether binary: DBA SQL on the baseline database only")
        store.copy("base", "dba")
        seconds, rows, mode = store.dba("dba")
        steps["bare_sql"] = {"seconds": seconds, "rows": rows, "journal_mode": mode}
        check("DBA UPDATE rows = expected new_link", rows == data.expected.get("new_link", 0),
              f"{rows} (expected {data.expected.get('new_link', 0)})")
        return res

    t = lambda db, *args: [str(tether), "--database", store.url(db), *map(str, args)]

    # (b) tether import
    log(f"{store.name}: (b) tether import")
    if store.name == "postgres":
        store.fresh("tether")
    else:
        store.fresh("tether")
    run_child(t("tether", "sources", "add", SOURCE, "--kind", "file"))
    if hasattr(store, "before_timed"):
        store.before_timed()
    settle()
    users = run_child(t("tether", "import", "users", data.users_csv))
    if hasattr(store, "before_timed"):
        store.before_timed()
    settle()
    accounts = run_child(t("tether", "import", "accounts", data.accounts_csv, "--source", SOURCE))
    steps["import_users"] = {"seconds": users.seconds, "rss_mib": users.rss_mib, "stdout": users.stdout[-2000:]}
    steps["import_accounts"] = {"seconds": accounts.seconds, "rss_mib": accounts.rss_mib,
                                "stdout": accounts.stdout[-2000:]}
    steps["import"] = {"seconds": users.seconds + accounts.seconds,
                       "rss_mib": max(users.rss_mib, accounts.rss_mib)}
    t_users = store.scalar("tether", "SELECT count(*) FROM users")
    t_accounts = store.scalar("tether", "SELECT count(*) FROM accounts")
    t_ext = store.scalar("tether", "SELECT count(external_id) FROM users")
    check("tether import row counts", t_users == data.n and t_accounts == data.stats["accounts"],
          f"{t_users} users, {t_accounts} accounts")
    check("imported External IDs", t_ext == data.expected.get("linked", 0),
          f"{t_ext} (expected {data.expected.get('linked', 0)})")
    log(f"{store.name}: (b) users {users.seconds:.2f} s / {users.rss_mib:.0f} MiB, accounts "
        f"{accounts.seconds:.2f} s / {accounts.rss_mib:.0f} MiB; database {store.size_mib('tether'):.0f} MiB")

    # (c) the DBA's bare SQL on a copy of tether's database
    store.analyze("tether")  # untimed; the copy inherits the statistics
    log(f"{store.name}: (c) DBA bare SQL on a copy")
    store.copy("tether", "dba")
    seconds, rows, mode = store.dba("dba")
    steps["bare_sql"] = {"seconds": seconds, "rows": rows, "journal_mode": mode}
    check("DBA UPDATE rows = expected new_link", rows == data.expected.get("new_link", 0),
          f"{rows} (expected {data.expected.get('new_link', 0)})")
    log(f"{store.name}: (c) {seconds:.2f} s, {rows} rows")

    # (d0) a dry run first: read + match + report, no writes (informational, no target)
    log(f"{store.name}: (d0) tether reconcile --dry-run")
    digests = {tb: store.table_digest("tether", tb) for tb in ("users", "audit", "outcomes")}
    if hasattr(store, "before_timed"):
        store.before_timed()
    settle()
    dry = run_child(t("tether", "reconcile", "--source", SOURCE, "--dry-run", "--format", "json"), check=False)
    steps["dry_run"] = {"seconds": dry.seconds, "rss_mib": dry.rss_mib, "rc": dry.rc}
    report = parse_report(dry)
    if report is None or dry.rc != 0:
        check("dry run printed its JSON report", False,
              f"exit {dry.rc}; stdout {dry.stdout[-500:]!r}; stderr {dry.stderr[-1500:]!r}")
    else:
        steps["dry_run"].update(report_fields(report))
        summary = {k: v for k, v in (report.get("summary") or {}).items() if v}
        check("dry run summary = expected", summary == data.expected,
              f"got {json.dumps(summary, sort_keys=True)}")
        check("dry run applied = 0", report.get("applied") == 0, f"{report.get('applied')}")
        after = {tb: store.table_digest("tether", tb) for tb in ("users", "audit", "outcomes")}
        check("dry run wrote nothing (users, audit, outcomes)", after == digests,
              ", ".join(f"{tb} {digests[tb][0]} -> {after[tb][0]} rows" + ("" if after[tb] == digests[tb] else " CHANGED")
                        for tb in digests))
    log(f"{store.name}: (d0) {dry.seconds:.2f} s, {dry.rss_mib:.0f} MiB")

    # (d) tether reconcile
    log(f"{store.name}: (d) tether reconcile")
    audit_before = store.scalar("tether", "SELECT count(*) FROM audit")
    if hasattr(store, "before_timed"):
        store.before_timed()
    settle()
    first = run_child(t("tether", "reconcile", "--source", SOURCE, "--format", "json"), check=False)
    steps["reconcile"] = {"seconds": first.seconds, "rss_mib": first.rss_mib, "rc": first.rc}
    report = parse_report(first)
    if report is None:
        check("first reconcile printed its JSON report", False,
              f"exit {first.rc}; stdout {first.stdout[-500:]!r}; stderr {first.stderr[-1500:]!r}")
        return res
    steps["reconcile"].update(report_fields(report))
    applied = report.get("applied")
    expected_new = data.expected.get("new_link", 0)
    check("first reconcile exit code", first.rc == 0, f"exit {first.rc}")
    check("first reconcile applied = expected new_link",
          applied == expected_new, f"{applied} (expected {expected_new} = {expected_new / data.n:.1%} of N)")
    summary = {k: v for k, v in (report.get("summary") or {}).items() if v}
    check("first reconcile summary = expected", summary == data.expected,
          f"got {json.dumps(summary, sort_keys=True)}, expected {json.dumps(data.expected, sort_keys=True)}")
    tether_links, dba_links = store.links("tether"), store.links("dba")
    diff = [k for k in set(tether_links) | set(dba_links) if tether_links.get(k) != dba_links.get(k)]
    check("tether's links = the DBA's links", not diff,
          f"{len(tether_links)} vs {len(dba_links)} users with External ID; {len(diff)} differ"
          + (f", e.g. user {sorted(diff)[0]}: tether {tether_links.get(sorted(diff)[0])!r},"
             f" DBA {dba_links.get(sorted(diff)[0])!r}" if diff else ""))
    audit_after = store.scalar("tether", "SELECT count(*) FROM audit")
    check("one audit entry per change", audit_after - audit_before == applied,
          f"{audit_after - audit_before} new audit rows for {applied} applied")
    outcomes = store.scalar("tether", "SELECT count(*) FROM outcomes")
    check("one outcome per user", outcomes == data.n, f"{outcomes} outcome rows for {data.n} users")
    log(f"{store.name}: (d) {first.seconds:.2f} s, {first.rss_mib:.0f} MiB, applied {applied}")

    # (e) a second reconcile: nothing to change, nothing written
    digests = {tb: store.table_digest("tether", tb) for tb in ("users", "audit", "outcomes")}
    if hasattr(store, "before_timed"):
        store.before_timed()
    settle()
    second = run_child(t("tether", "reconcile", "--source", SOURCE, "--format", "json"), check=False)
    steps["reconcile_again"] = {"seconds": second.seconds, "rss_mib": second.rss_mib, "rc": second.rc}
    report2 = parse_report(second)
    if report2 is None:
        check("second reconcile printed its JSON report", False,
              f"exit {second.rc}; stdout {second.stdout[-500:]!r}; stderr {second.stderr[-1500:]!r}")
        return res
    steps["reconcile_again"].update(report_fields(report2))
    check("second reconcile exit code", second.rc == 0, f"exit {second.rc}")
    check("second reconcile applied = 0", report2.get("applied") == 0, f"{report2.get('applied')}")
    expected2 = dict(data.expected)
    expected2["linked"] = expected2.get("linked", 0) + expected2.pop("new_link", 0)
    summary2 = {k: v for k, v in (report2.get("summary") or {}).items() if v}
    check("second reconcile summary = expected", summary2 == expected2,
          f"got {json.dumps(report2.get('summary'), sort_keys=True)}, expected {json.dumps(expected2, sort_keys=True)}")
    after = {tb: store.table_digest("tether", tb) for tb in ("users", "audit", "outcomes")}
    for tb in ("users", "audit", "outcomes"):
        check(f"second reconcile left {tb} unchanged", after[tb] == digests[tb],
              f"{digests[tb][0]} rows, digest {digests[tb][1]} -> {after[tb][0]} rows, digest {after[tb][1]}")
    log(f"{store.name}: (e) {second.seconds:.2f} s, {second.rss_mib:.0f} MiB, applied {report2.get('applied')}")
    return res


def report_fields(report: dict) -> dict:
    """The parts of tether's JSON report kept in the results."""
    out = {k: report.get(k) for k in ("applied", "summary", "planned", "outcomes_written", "duration_ms")
           if k in report}
    if isinstance(report.get("conflicts"), list):
        out["conflicts"] = len(report["conflicts"])
    return out


def parse_report(child: Child) -> dict | None:
    text = child.stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):  # tolerate chatter before the object
        try:
            value = json.loads(line)
            if isinstance(value, dict):
                return value
        except json.JSONDecodeError:
            continue
    start = text.find("{")
    try:
        value = json.loads(text[start:]) if start >= 0 else None
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        return None


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

def ratios(res: dict) -> list[dict]:
    s = res["steps"]
    out = []

    def ratio(name, num, den, target):
        if num in s and den in s and s[den]["seconds"] > 0:
            value = s[num]["seconds"] / s[den]["seconds"]
            out.append({"ratio": name, "value": value, "target": target, "met": value <= target})

    ratio("reconcile / bare SQL", "reconcile", "bare_sql", TARGET_RECONCILE)
    ratio("2nd reconcile / bare SQL", "reconcile_again", "bare_sql", TARGET_NOOP)
    ratio("tether import / bulk load", "import", "bulk_load", TARGET_IMPORT)
    rss = [s[k]["rss_mib"] for k in ("import_users", "import_accounts", "dry_run", "reconcile", "reconcile_again")
           if k in s]
    if rss:
        out.append({"ratio": "peak RSS MiB (any tether run)", "value": max(rss), "target": TARGET_RSS_MIB,
                    "met": max(rss) <= TARGET_RSS_MIB})
    return out


def render(res: dict) -> str:
    s = res["steps"]
    lines = [f"== {res['store']} · N = {res['n']:,} · {res['engine']} =="]
    if res.get("load_before_steps"):
        loads = res["load_before_steps"]
        lines.append(f"1-minute load average before the timed steps: {min(loads):.2f} to {max(loads):.2f}"
                     + ("  (machine busy: times are inflated)" if max(loads) > 1.0 else ""))
    lines.append(f"{'step':<44}{'seconds':>10}{'peak RSS MiB':>15}")

    def row(label, key, extra=""):
        if key in s:
            rss = s[key].get("rss_mib")
            lines.append(f"{label:<44}{s[key]['seconds']:>10.2f}{(f'{rss:.0f}' if rss is not None else '-'):>15}{extra}")

    row("(a) bulk load, baseline", "bulk_load")
    row("(b) tether import users", "import_users")
    row("    tether import accounts", "import_accounts")
    row("    tether import, total", "import")
    row("(c) bare SQL: index + UPDATE, baseline", "bare_sql", f"   ({s.get('bare_sql', {}).get('rows')} rows)")
    row("(d0) tether reconcile --dry-run (no target)", "dry_run",
        f"   (planned {s.get('dry_run', {}).get('planned')})")
    row("(d) tether reconcile", "reconcile", f"   (applied {s.get('reconcile', {}).get('applied')})")
    row("(e) tether reconcile again (no-op)", "reconcile_again",
        f"   (applied {s.get('reconcile_again', {}).get('applied')})")
    lines.append("")
    lines.append(f"{'ratio':<44}{'value':>10}{'target':>15}  verdict")
    for r in ratios(res):
        if r["ratio"].startswith("peak RSS"):
            value, target = f"{r['value']:.0f}", f"<= {r['target']:.0f}"
            miss = f"MISS: {r['value'] / r['target']:.2f}x the limit"
        else:
            value, target = f"{r['value']:.2f}x", f"<= {r['target']:.2f}x"
            miss = f"MISS: {r['value'] / r['target']:.2f}x the target"
        lines.append(f"{r['ratio']:<44}{value:>10}{target:>15}  {'ok' if r['met'] else miss}")
    if "reconcile" in s and s["reconcile"].get("summary"):
        lines.append("")
        lines.append("first reconcile summary: " + json.dumps(s["reconcile"]["summary"], sort_keys=True))
    lines.append("")
    lines.append("checks")
    for c in res["checks"]:
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="users, and accounts (default 1000000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    ap.add_argument("--pg-url", help="PostgreSQL server to use (needs CREATEDB); default: start a "
                    "throwaway cluster with scripts/pg-cluster.sh")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="data and databases (default bench/out)")
    ap.add_argument("--tether", type=Path, default=ROOT / "target" / "release" / "tether",
                    help="the binary (default target/release/tether)")
    ap.add_argument("--baselines-only", action="store_true", help="no tether: generate, bulk load, bare SQL")
    ap.add_argument("--migrations", type=Path, default=ROOT / "crates" / "tether-store" / "migrations",
                    help=argparse.SUPPRESS)
    ap.add_argument("--sqlite-pragmas", choices=["tether", "defaults"], default="tether",
                    help="connection settings of the SQLite baselines: the ones tether's store sets "
                    "(default), or SQLite's defaults with WAL")
    ap.add_argument("--json", action="store_true", help="print machine-readable results instead of tables")
    ap.add_argument("--save", type=Path, help="also write the machine-readable results to this file")
    args = ap.parse_args()

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in ("sqlite", "postgres"):
            ap.error(f"unknown store {s!r}: expected sqlite or postgres")
    tether = None
    if not args.baselines_only:
        tether = args.tether.resolve()
        if not tether.exists():
            ap.error(f"{tether} not found: build it with `cargo build --release -p tether` "
                     "(or use --baselines-only)")

    out = args.out.resolve()
    data = generate(args.n, args.seed, out)
    results = {"n": args.n, "seed": args.seed, "data": data.stats, "expected_summary": data.expected,
               "tether": binary_identity(tether) if tether else None, "machine": machine(), "stores": []}
    cluster = None
    try:
        for name in stores:
            try:
                if name == "sqlite":
                    store = SqliteBench(out, args.migrations, args.sqlite_pragmas)
                else:
                    url = args.pg_url
                    if not url:
                        cluster = Cluster(out / "pg")
                        url = cluster.start()
                    store = PgBench(out, args.migrations, url)
                results["stores"].append(run_store(store, data, tether))
            except BenchError as e:
                log(f"{name}: ERROR: {e}")
                results["stores"].append({"store": name, "n": args.n, "engine": "-", "steps": {}, "ok": False,
                                          "checks": [{"check": "benchmark ran", "ok": False, "detail": str(e)}]})
            finally:
                if name == "postgres" and cluster is not None:
                    cluster.stop()
                    shutil.rmtree(cluster.folder, ignore_errors=True)
                    cluster = None
    finally:
        if cluster is not None:
            cluster.stop(quiet=True)

    for r in results["stores"]:
        r["ratios"] = ratios(r)
    if args.save:
        args.save.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"tether reconcile benchmark · N = {args.n:,} users + {data.stats['accounts']:,} accounts · "
              f"seed {args.seed} · {results['machine']}")
        print(f"expected first-run summary: {json.dumps(data.expected, sort_keys=True)}")
        if results["tether"]:
            print(f"binary: {results['tether']}")
        for r in results["stores"]:
            print()
            print(render(r))
        misses = [f"{r['store']}: {x['ratio']}" for r in results["stores"] for x in r.get("ratios", []) if not x["met"]]
        failed = [f"{r['store']}: {c['check']}" for r in results["stores"] for c in r["checks"] if not c["ok"]]
        print()
        print("targets missed: " + ("; ".join(misses) if misses else "none"))
        print("checks failed: " + ("; ".join(failed) if failed else "none"))
    return 0


def binary_identity(path: Path) -> str:
    """Path, build time and hash prefix: the binary may be rebuilt between runs."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    built = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return f"{path} (built {built}, sha256 {digest}…)"


def machine() -> str:
    cpus = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0
    return f"{cpus} CPUs, {mem:.0f} GiB RAM"


if __name__ == "__main__":
    sys.exit(main())
