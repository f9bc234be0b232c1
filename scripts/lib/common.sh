# Shared by scripts/*: installing what is missing, and starting throw-away
# services as local processes on free ports. Source it; do not run it.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# One build cache per machine, shared by every clone (and by CI runs).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/todo-host/target}"
PLUGINS_TARGET_DIR="${PLUGINS_TARGET_DIR:-$HOME/.cache/todo-host/plugins-target}"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE...: installs the Debian packages that are missing.
apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null || { log "cargo is missing: install Rust with rustup first"; exit 1; }
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
  # librdkafka's TLS links the system's OpenSSL.
  apt_install build-essential pkg-config libssl-dev
}

# ensure_edge_tools: what the tests of TLS and proxies run beside the host:
# nginx, stunnel (a TLS terminator in front of the broker) and openssl.
ensure_edge_tools() {
  apt_install nginx stunnel4 openssl
}

ensure_postgres() {
  apt_install postgresql postgresql-contrib
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() {
  find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root: run its tools as the `postgres` user.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The role todo-host connects as: not a superuser; CREATEROLE (it creates a
# role per plugin granted `sql`), owner of its database and tables.
APP_DB_ROLE=todo_host

# start_postgres DATA_DIR [durable]: initialises a cluster in DATA_DIR, starts
# it on a free port, creates the role $APP_DB_ROLE and exports PG_PORT,
# PG_DATA and PG_URL (superuser `postgres`, database `postgres`: for the
# scripts, never for the host). Without `durable`, fsync is off: fast, and
# fine for data that dies with the run.
start_postgres() {
  local data_dir=$1 mode=${2:-}
  local bin
  bin=$(pg_bin)
  PG_PORT=$(free_port)
  PG_DATA=$data_dir
  mkdir -p "$data_dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$data_dir"
  as_postgres "$bin/initdb" -D "$data_dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  local options="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$data_dir -c max_connections=300"
  if [ "$mode" != durable ]; then
    options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  as_postgres "$bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -o "$options" -w start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  PG_OPTIONS=$options
  psql -qX "$PG_URL" -c "CREATE ROLE $APP_DB_ROLE LOGIN CREATEROLE" >/dev/null
  export PG_PORT PG_DATA PG_URL PG_OPTIONS
}

# create_app_database NAME: a database owned by $APP_DB_ROLE; prints the URL
# the host connects to it with.
create_app_database() {
  psql -qX "$PG_URL" -c "CREATE DATABASE \"$1\" OWNER $APP_DB_ROLE" >/dev/null
  echo "postgres://$APP_DB_ROLE@127.0.0.1:$PG_PORT/$1"
}

stop_postgres() {
  [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ] || return 0
  as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

# start_postgres_replica DATA_DIR: a streaming replica (hot standby) of the
# stack's PostgreSQL (start_postgres first), made with pg_basebackup, on a
# free port. Exports REPLICA_PORT and REPLICA_DATA.
start_postgres_replica() {
  local data_dir=$1 bin
  bin=$(pg_bin)
  REPLICA_PORT=$(free_port)
  REPLICA_DATA=$data_dir
  mkdir -p "$(dirname "$data_dir")"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$(dirname "$data_dir")"
  as_postgres "$bin/pg_basebackup" -D "$data_dir" -R -X stream --checkpoint=fast -h 127.0.0.1 -p "$PG_PORT" -U postgres
  local options="${PG_OPTIONS/port=$PG_PORT/port=$REPLICA_PORT}"
  options="${options/unix_socket_directories=$PG_DATA/unix_socket_directories=$data_dir}"
  as_postgres "$bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -o "$options" -w start >/dev/null
  export REPLICA_PORT REPLICA_DATA
}

stop_postgres_replica() {
  [ -n "${REPLICA_DATA:-}" ] && [ -f "$REPLICA_DATA/postmaster.pid" ] || return 0
  as_postgres "$(pg_bin)/pg_ctl" -D "$REPLICA_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

# build_host [cargo args...]: builds the todo-host binary.
build_host() {
  (cd "$ROOT" && cargo build --locked -p todo-host "$@")
}

# Tools built from crates.io live here, shared by every clone like the target dir.
TOOLS_ROOT="${TOOLS_ROOT:-$HOME/.cache/todo-host/tools}"
TANSU_VERSION=0.6.0
# PgBouncer from Debian trixie's source package (bookworm's 1.18 is too old:
# named prepared statements in transaction pooling need >= 1.21).
PGBOUNCER_VERSION=1.24.1
PGBOUNCER_DEBIAN_REVISION=1+deb13u2
PGBOUNCER_ORIG_SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
PGBOUNCER_DEBIAN_SHA256=2325bcaa2e71919d399b9e5aef5b94ff988fc1f1d296908c3937b682b7be5cbb

# ensure_tansu: installs the Tansu Kafka-protocol broker (pinned, with its
# storage engines, patched by scripts/lib/tansu-storage.patch) when missing.
# It builds the published crate against its own Cargo.lock (without it some
# features fail to compile); without a storage feature it cannot start at all
# (dynostore = memory://, libsql = sqlite://, postgres = postgres://).
TANSU_FEATURES=dynostore,libsql,postgres
ensure_tansu() {
  TANSU="$TOOLS_ROOT/bin/tansu"
  local patch="$ROOT/scripts/lib/tansu-storage.patch"
  local stamp="$TANSU_VERSION $TANSU_FEATURES $(sha256sum <"$patch" | cut -c1-16)"
  if [ -x "$TANSU" ] && [ "$(cat "$TOOLS_ROOT/tansu.version" 2>/dev/null)" = "$stamp" ]; then
    export TANSU
    return 0
  fi
  log "building tansu $TANSU_VERSION (once per machine, 15-20 minutes)"
  apt_install build-essential pkg-config libssl-dev protobuf-compiler
  local src="$TOOLS_ROOT/tansu-src"
  rm -rf "$src" && mkdir -p "$src/fetch/src"
  # cargo downloads the published crates into its cache; they are unpacked
  # from there so the build sees exactly what crates.io serves.
  printf '[package]\nname = "fetch-tansu"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ntansu = "=%s"\ntansu-storage = "=%s"\n' \
    "$TANSU_VERSION" "$TANSU_VERSION" >"$src/fetch/Cargo.toml"
  touch "$src/fetch/src/lib.rs"
  (cd "$src/fetch" && cargo fetch --quiet)
  local crate
  for crate in tansu tansu-storage; do
    tar xzf "$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$TANSU_VERSION.crate" | head -1)" -C "$src"
  done
  patch -s -d "$src/tansu-storage-$TANSU_VERSION" -p1 <"$patch"
  printf '\n[patch.crates-io]\ntansu-storage = { path = "../tansu-storage-%s" }\n' "$TANSU_VERSION" \
    >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
  (cd "$src/tansu-$TANSU_VERSION" &&
    CARGO_TARGET_DIR="$HOME/.cache/todo-host/tools-target" cargo build --release --quiet --features "$TANSU_FEATURES")
  install -D -m 755 "$HOME/.cache/todo-host/tools-target/release/tansu" "$TANSU"
  echo "$stamp" >"$TOOLS_ROOT/tansu.version"
  export TANSU
}

ensure_redis() {
  apt_install redis-server
}

# start_redis DIR [durable]: starts redis-server on a free port, exporting
# REDIS_PORT and REDIS_URL. Without `durable` nothing is persisted.
start_redis() {
  local dir=$1 mode=${2:-}
  REDIS_PORT=$(free_port)
  mkdir -p "$dir"
  local persistence=(--save "" --appendonly no)
  [ "$mode" = durable ] && persistence=(--appendonly yes --appendfsync everysec)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${persistence[@]}" >/dev/null
  REDIS_DIR=$dir
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  wait_for_port "$REDIS_PORT" redis-server
  export REDIS_PORT REDIS_URL REDIS_DIR
}

# stop_redis: stops the redis-server start_redis started, and waits for it:
# Redis saves before it exits and refuses to exit when that save fails (as
# when its directory is removed right after the signal).
stop_redis() {
  [ -n "${REDIS_DIR:-}" ] && [ -f "$REDIS_DIR/redis.pid" ] || return 0
  stop_process "$(cat "$REDIS_DIR/redis.pid")" redis-server 5
}

# start_tansu DIR [durable]: starts the Tansu broker on a free port,
# exporting KAFKA_PORT and KAFKA_BROKERS. `durable` keeps the log in the
# database `tansu` of the stack's PostgreSQL (start_postgres first): what
# the broker acknowledged survives its crash, and it holds up under load
# (its SQLite engine dies under a sustained idempotent-producer load,
# "more or less than one row"). Otherwise in memory: fast, and lost with it.
start_tansu() {
  local dir=$1 mode=${2:-}
  ensure_tansu
  KAFKA_PORT=$(free_port)
  mkdir -p "$dir"
  local storage="memory://tansu/"
  if [ "$mode" = durable ]; then
    psql -qX "$PG_URL" -c "CREATE DATABASE tansu" >/dev/null
    psql -qX -v ON_ERROR_STOP=1 "${PG_URL%/*}/tansu" -f "$ROOT/scripts/lib/tansu-postgres.sql" >/dev/null
    storage="${PG_URL%/*}/tansu"
  fi
  local url="tcp://127.0.0.1:$KAFKA_PORT"
  TANSU_STORAGE=$storage
  TANSU_DIR=$dir
  # Its own session: a Ctrl-C at the terminal reaches the script, which
  # stops the host before the broker, not the broker under the host.
  (cd "$dir" && exec setsid "$TANSU" broker --listener-url "$url" --advertised-listener-url "$url" --storage-engine "$storage") \
    >>"$dir/tansu.log" 2>&1 &
  TANSU_PID=$!
  KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  wait_for_port "$KAFKA_PORT" tansu
  export KAFKA_PORT KAFKA_BROKERS TANSU_PID TANSU_STORAGE TANSU_DIR
}

stop_tansu() {
  [ -n "${TANSU_PID:-}" ] || return 0
  stop_process "$TANSU_PID" tansu 10
}

# ensure_pgbouncer: exports PGBOUNCER, a pgbouncer binary >= 1.21 (the first
# to keep protocol-level named prepared statements working in transaction
# pooling, with max_prepared_statements > 0). Debian's own if it is recent
# enough, else the pinned trixie source (its patches applied) built once per
# machine into $TOOLS_ROOT/pgbouncer-$PGBOUNCER_VERSION.
ensure_pgbouncer() {
  local system=/usr/sbin/pgbouncer
  if [ -x "$system" ] && dpkg --compare-versions "$(pgbouncer_version "$system")" ge 1.21; then
    PGBOUNCER=$system
    export PGBOUNCER
    return 0
  fi
  PGBOUNCER="$TOOLS_ROOT/pgbouncer-$PGBOUNCER_VERSION/bin/pgbouncer"
  local stamp="$PGBOUNCER_VERSION-$PGBOUNCER_DEBIAN_REVISION"
  if [ -x "$PGBOUNCER" ] && [ "$(cat "$TOOLS_ROOT/pgbouncer.version" 2>/dev/null)" = "$stamp" ]; then
    export PGBOUNCER
    return 0
  fi
  log "building pgbouncer $stamp (once per machine, about a minute)"
  apt_install build-essential pkg-config libevent-dev libssl-dev libc-ares-dev curl patch xz-utils
  local src="$TOOLS_ROOT/pgbouncer-src"
  rm -rf "$src" && mkdir -p "$src"
  fetch_debian_source pgbouncer "$PGBOUNCER_VERSION.orig.tar.gz" "$PGBOUNCER_ORIG_SHA256" "$src"
  fetch_debian_source pgbouncer "$stamp.debian.tar.xz" "$PGBOUNCER_DEBIAN_SHA256" "$src"
  tar xzf "$src/pgbouncer_$PGBOUNCER_VERSION.orig.tar.gz" -C "$src"
  tar xJf "$src/pgbouncer_$stamp.debian.tar.xz" -C "$src"
  local tree="$src/pgbouncer-$PGBOUNCER_VERSION" patch
  # Debian's series: security fixes (CVEs), and paths in the sample config.
  while read -r patch; do
    case $patch in '' | '#'*) continue ;; esac
    patch -s -d "$tree" -p1 <"$src/debian/patches/$patch"
  done <"$src/debian/patches/series"
  # Only the binary: the man pages ship prebuilt, and the html docs (pandoc)
  # are not part of this target.
  (cd "$tree" && ./configure -q --prefix="$TOOLS_ROOT/pgbouncer-$PGBOUNCER_VERSION" --with-cares >/dev/null &&
    make -s -j"$(nproc)" pgbouncer >/dev/null)
  install -D -m 755 "$tree/pgbouncer" "$PGBOUNCER"
  echo "$stamp" >"$TOOLS_ROOT/pgbouncer.version"
  export PGBOUNCER
}

# pgbouncer_version BINARY: prints its version, e.g. 1.24.1.
pgbouncer_version() {
  "$1" --version | awk 'NR == 1 { print $2 }'
}

# fetch_debian_source PACKAGE FILE SHA256 DIR: downloads PACKAGE_FILE from
# the Debian archive's pool into DIR and checks its SHA-256.
fetch_debian_source() {
  local package=$1 file="$1_$2" sha256=$3 dir=$4
  curl -fsSL --retry 3 -o "$dir/$file" "http://deb.debian.org/debian/pool/main/${package:0:1}/$package/$file"
  echo "$sha256  $dir/$file" | sha256sum -c --quiet - || { log "$file: SHA-256 mismatch"; exit 1; }
}

# start_pgbouncer DIR [pool_mode]: starts pgbouncer (ensure_pgbouncer) on a
# free port in front of the stack's PostgreSQL (start_postgres first): every
# database, any role of the cluster (trust, like the cluster; roles missing
# from the auth_file, even ones created later, are looked up through
# auth_user postgres), transaction pooling unless told otherwise, with
# protocol-level named prepared statements kept working across server
# connections. Exports PGBOUNCER_PORT, PGBOUNCER_HOSTPORT (127.0.0.1:port, to
# put in a URL in place of 127.0.0.1:$PG_PORT), PGBOUNCER_DIR and
# PGBOUNCER_PID. DIR holds pgbouncer.ini, pgbouncer.log, pgbouncer.pid and
# the unix socket. As root it runs as `postgres` (it refuses root) through
# its own `user` setting: as_postgres could not reach a binary under a 0700
# $HOME. Startup parameters other than extra_float_digits, and -c settings
# in `options`, are refused unless pgbouncer tracks them (client_encoding,
# DateStyle, TimeZone, standard_conforming_strings, application_name,
# IntervalStyle): the connection fails with "unsupported startup parameter".
start_pgbouncer() {
  local dir=$1 mode=${2:-transaction}
  ensure_pgbouncer
  PGBOUNCER_PORT=$(free_port)
  mkdir -p "$dir"
  echo '"postgres" ""' >"$dir/userlist.txt"
  local config=(
    "[databases]"
    "* = host=127.0.0.1 port=$PG_PORT"
    "[pgbouncer]"
    "listen_addr = 127.0.0.1"
    "listen_port = $PGBOUNCER_PORT"
    "unix_socket_dir = $dir"
    "auth_type = trust"
    "auth_file = $dir/userlist.txt"
    "auth_user = postgres"
    "admin_users = postgres"
    "pool_mode = $mode"
    "max_prepared_statements = 200"
    "max_client_conn = 1000"
    "default_pool_size = 20"
    "ignore_startup_parameters = extra_float_digits"
    "pidfile = $dir/pgbouncer.pid"
  )
  [ "$(id -u)" = 0 ] && config+=("user = postgres")
  printf '%s\n' "${config[@]}" >"$dir/pgbouncer.ini"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
  PGBOUNCER_DIR=$dir
  # Its own session, like tansu: a Ctrl-C reaches the script, not pgbouncer.
  # Its log is its stderr (a `logfile` would get the same lines twice).
  setsid "$PGBOUNCER" "$dir/pgbouncer.ini" >>"$dir/pgbouncer.log" 2>&1 &
  PGBOUNCER_PID=$!
  PGBOUNCER_HOSTPORT="127.0.0.1:$PGBOUNCER_PORT"
  wait_for_port "$PGBOUNCER_PORT" pgbouncer
  export PGBOUNCER_PORT PGBOUNCER_HOSTPORT PGBOUNCER_DIR PGBOUNCER_PID
}

# stop_pgbouncer: immediate shutdown (SIGQUIT: SIGTERM would wait for every
# client to disconnect), then waits for it to exit.
stop_pgbouncer() {
  [ -n "${PGBOUNCER_PID:-}" ] || return 0
  kill -QUIT "$PGBOUNCER_PID" 2>/dev/null || return 0
  stop_process "$PGBOUNCER_PID" pgbouncer 10
}

# stop_process PID NAME SECONDS: SIGTERM, then SIGKILL if PID has not
# exited after SECONDS (reaped when it is a child of this shell).
stop_process() {
  local pid=$1 name=$2 seconds=$3 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((seconds * 10)) ]; then
      log "$name did not stop within $seconds s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

# wait_for_port PORT NAME: waits up to 20 s for a TCP listener on PORT.
wait_for_port() {
  local port=$1 name=$2 tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 200 ] || { log "$name did not listen on port $port"; exit 1; }
    sleep 0.1
  done
}
