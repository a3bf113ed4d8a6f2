#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg-cluster.sh start DIR   create (if needed) and start a cluster in DIR; the last
#                                     line on stdout is its URL, postgres://postgres@127.0.0.1:PORT/tether
#   scripts/pg-cluster.sh stop DIR    stop it (a stopped or missing cluster is not an error)
#   scripts/pg-cluster.sh url DIR     print the URL of a cluster made by `start`
#
# The cluster belongs to the `postgres` OS user (we usually run as root), listens only on
# 127.0.0.1 with trust authentication on a free port, and keeps PostgreSQL's durable defaults
# (fsync and synchronous_commit stay on: benchmarks measure real settings). Progress goes to
# stderr so that `URL=$(scripts/pg-cluster.sh start DIR | tail -n 1)` works.
#
# When no PostgreSQL binaries are found (in /usr/lib/postgresql/*/bin, then PATH), it installs
# Debian's `postgresql` package without letting the package create its own cluster.
set -euo pipefail

PG_USER=postgres
DATABASE=tether

log() { printf 'pg-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, else PATH.
find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

install_postgres() {
    [[ $(id -u) -eq 0 ]] || die "no PostgreSQL binaries found, and installing them needs root"
    command -v apt-get >/dev/null || die "no PostgreSQL binaries found and no apt-get to install them"
    log "no PostgreSQL binaries found: installing Debian's postgresql package"
    # Keep the package from creating (and starting) its own "main" cluster: we never use it.
    mkdir -p /etc/postgresql-common
    local conf=/etc/postgresql-common/createcluster.conf
    if grep -qs '^[#[:space:]]*create_main_cluster' "$conf"; then
        sed -i 's/^[#[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
        echo 'create_main_cluster = false' >>"$conf"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        # A refused connection means nothing listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "found no free port"
}

url_of() {
    echo "postgres://$PG_USER@127.0.0.1:$(cat "$1/port")/$DATABASE"
}

is_running() {
    as_owner "$BINDIR/pg_ctl" status -D "$1/data" >/dev/null 2>&1
}

start() {
    local dir=$1
    mkdir -p "$dir"
    dir=$(readlink -f "$dir")

    BINDIR=$(find_bindir) || { install_postgres; BINDIR=$(find_bindir) || die "PostgreSQL binaries still not found after installing"; }
    log "using $BINDIR ($("$BINDIR/pg_ctl" --version))"

    if [[ $(id -u) -eq 0 ]]; then
        id "$PG_USER" >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/bash "$PG_USER"
        chown "$PG_USER:" "$dir"
        chmod 700 "$dir"
        # The owner must be able to reach DIR through every parent directory.
        as_owner test -w "$dir" || die "user $PG_USER cannot write $dir (is a parent directory private?)"
    fi

    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        log "creating a cluster in $dir/data"
        as_owner "$BINDIR/initdb" -D "$dir/data" -U "$PG_USER" -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=trust --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        cat >>"$dir/data/postgresql.conf" <<'EOF'

# pg-cluster.sh: a throwaway cluster on loopback only. Durability settings stay at their defaults.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_buffers = 256MB
EOF
    fi

    if is_running "$dir"; then
        log "already running"
        url_of "$dir"
        return
    fi

    local attempt port
    for attempt in 1 2 3; do
        port=$(free_port)
        echo "$port" >"$dir/port"
        chown "$PG_USER:" "$dir/port" 2>/dev/null || true
        if as_owner "$BINDIR/pg_ctl" start -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
            -o "-p $port" >&2; then
            break
        fi
        # Another process may have taken the port in between: try another one.
        log "start on port $port failed (attempt $attempt):"
        tail -n 5 "$dir/postgresql.log" >&2 || true
        [[ $attempt -lt 3 ]] || die "could not start the cluster; see $dir/postgresql.log"
    done

    if ! as_owner "$BINDIR/psql" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
        as_owner "$BINDIR/createdb" -h 127.0.0.1 -p "$port" -U "$PG_USER" "$DATABASE"
    fi
    url_of "$dir"
}

stop() {
    local dir=$1
    [[ -d "$dir" ]] || { log "no cluster in $dir"; return; }
    dir=$(readlink -f "$dir")
    [[ -f "$dir/data/PG_VERSION" ]] || { log "no cluster in $dir"; return; }
    BINDIR=$(find_bindir) || die "no PostgreSQL binaries found"
    if is_running "$dir"; then
        as_owner "$BINDIR/pg_ctl" stop -D "$dir/data" -m fast -w >&2
    else
        log "not running"
    fi
}

[[ $# -eq 2 ]] || usage
case $1 in
    start) start "$2" ;;
    stop) stop "$2" ;;
    url) [[ -f "$2/port" ]] || die "no cluster started in $2"; url_of "$2" ;;
    *) usage ;;
esac
