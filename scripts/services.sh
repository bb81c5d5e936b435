#!/usr/bin/env bash
# The outside services the tests need, on loopback only. Stops only what it started.
#
#   eval "$(scripts/services.sh start)"    start what is missing, print `export VAR=value` lines
#   scripts/services.sh stop [STATE_DIR]   undo what `start` did (default: $BANK_SERVICES_STATE)
#
# `start`:
#   - PostgreSQL on 127.0.0.1:5432: used when it answers; otherwise installed when missing
#     (apt-get, as root) and started with pg_ctlcluster (a cluster is created with pg_createcluster,
#     trust auth, when none has port 5432). A fresh database bank_test_<date>_<pid> is created.
#   - a primary plus streaming standby (scripts/pg-pair.sh) on two free loopback ports from 25433
#     up, in STATE_DIR/pg-pair.
#   - an AWS API emulator: moto (`moto[server]` from PyPI, installed when missing into a virtualenv
#     at BANK_MOTO_VENV, default ~/.cache/bank-moto-venv) serving on a free loopback port from
#     25500 up, one request at a time (scripts/moto_serialized.py: moto's conditional writes are
#     not atomic otherwise), its log in STATE_DIR/moto.log. A fresh emulator per run.
#   - Redis: the one on 127.0.0.1:6379 when it answers PING (tests use a unique key prefix per
#     case, so sharing it is safe); otherwise redis-server (installed with apt-get when missing, as
#     root) started on a free loopback port from 25600 up with no persistence, its log in
#     STATE_DIR/redis.log.
#   and exports (also written to STATE_DIR/services.env):
#     BANK_SERVICES_STATE     the state folder, for `stop`
#     BANK_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:5432/<fresh database>
#     BANK_TEST_PRIMARY_URL   the pair's primary
#     BANK_TEST_STANDBY_URL   the pair's standby (hot standby, streaming)
#     BANK_TEST_PG_BINDIR     PostgreSQL's bin folder
#     BANK_PG_PAIR_SCRIPT     absolute path of pg-pair.sh, for a test that starts its own pair
#     BANK_TEST_AWS_ENDPOINT  http://127.0.0.1:<port> of the moto server
#     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  the emulator's dummy credentials (`testing`), for
#                             servers tests start on the AWS backend; AWS_EC2_METADATA_DISABLED=true
#     BANK_TEST_REDIS_URL     redis://127.0.0.1:<port> (the view cache and rate-limit tests)
#   A service that cannot be provided gets a warning on stderr and no export (its tests skip,
#   saying why); with BANK_REQUIRE_SERVICES=1 the script then exits non-zero instead.
# `stop` drops the fresh database, stops the pair, the moto server and a Redis `start` started,
#   stops PostgreSQL if `start` started it, and removes the state folder. Calling it again does nothing.
#
# Environment:
#   BANK_SERVICES_DIR        state folder for `start` (default: a new mktemp folder in ${TMPDIR:-/tmp})
#   BANK_PG_PAIR_PORT        first port tried for the pair (default 25433)
#   BANK_PG_PORT             port of the shared PostgreSQL (default 5432; for testing this script)
#   BANK_MOTO_VENV           the virtualenv moto is installed in (default ~/.cache/bank-moto-venv)
#   BANK_MOTO_PORT           first port tried for moto (default 25500)
#   BANK_REDIS_SHARED_PORT   port of the shared Redis used when it answers (default 6379)
#   BANK_REDIS_PORT          first port tried for a Redis of our own (default 25600)
#   BANK_REQUIRE_SERVICES=1  a missing service is an error
#
# Only the export lines go to stdout; every message goes to stderr.
set -euo pipefail
# runuser, pg_ctlcluster and friends live in sbin, which a minimal PATH (cron, CI) may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# fd 3 is the real stdout (the export lines); everything else, tools included, goes to stderr.
exec 3>&1 1>&2

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
PAIR_SCRIPT="$SCRIPTS/pg-pair.sh"
PG_HOST=127.0.0.1
PG_PORT="${BANK_PG_PORT:-5432}"
WAIT_SECONDS=30
MARKER=.bank-services
REQUIRE="${BANK_REQUIRE_SERVICES:-0}"

say() {
  printf 'services: %s\n' "$*" >&2
}
die() {
  printf 'services: error: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# A service that cannot be provided: an error under BANK_REQUIRE_SERVICES=1, a warning otherwise.
MISSING=()
unavailable() {
  MISSING+=("$1")
  if [[ "$REQUIRE" == 1 ]]; then
    say "error: $1 unavailable: $2"
  else
    say "warning: $1 unavailable, its tests will skip: $2"
  fi
}

# bindir_ok DIR: DIR holds the PostgreSQL binaries the scripts run.
bindir_ok() {
  local tool
  for tool in pg_ctl initdb postgres pg_basebackup psql pg_isready; do
    [[ -x "$1/$tool" ]] || return 1
  done
}

# The PostgreSQL bin folder (the newest installed), or nothing.
find_bindir() {
  local candidates=() ctl dir
  if ctl="$(command -v pg_ctl 2>/dev/null)"; then
    candidates+=("$(dirname "$(readlink -f "$ctl")")")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  for dir in "${candidates[@]}"; do
    if bindir_ok "$dir"; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

install_postgres() {
  if [[ "$(id -u)" != 0 ]]; then
    echo "no PostgreSQL binaries, and installing them needs root"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no PostgreSQL binaries, and no apt-get to install them"
    return 1
  fi
  say "installing PostgreSQL (apt-get install -y postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q postgresql </dev/null >&2; then
    say "apt-get install failed; retrying after apt-get update"
    if ! { apt-get update -q </dev/null >&2 && apt-get install -y -q postgresql </dev/null >&2; }; then
      echo "apt-get install postgresql failed"
      return 1
    fi
  fi
  : >"$STATE/installed-postgres"
}

# After `start` installed PostgreSQL, the package's new cluster answers TCP with scram: let user
# postgres in from 127.0.0.1 without a password, as on a developer machine. Only on a cluster
# this run installed.
trust_installed_cluster() {
  [[ -f "$STATE/installed-postgres" ]] || return 0
  local ver name port status rest hba
  while read -r ver name port status rest; do
    [[ "$port" == "$PG_PORT" ]] || continue
    hba="/etc/postgresql/$ver/$name/pg_hba.conf"
    [[ -f "$hba" ]] || continue
    grep -q 'bank services.sh' "$hba" && continue
    say "letting postgres in from 127.0.0.1 without a password on the cluster just installed ($hba)"
    sed -i '1i host all postgres 127.0.0.1/32 trust  # bank services.sh' "$hba"
    if [[ "$status" == online ]]; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >&2 || true
      # The package started it, not the machine's owner: stop it again at `stop`.
      printf '%s %s\n' "$ver" "$name" >"$STATE/started-postgres"
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
}

pg_ready() {
  "$BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -t 3
}

# psql_main SQL: one value from the postgres database on 127.0.0.1:5432.
psql_main() {
  PGCONNECT_TIMEOUT=5 timeout 60 "$BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c "$1"
}

# Starts the local cluster on port 5432 (creating one when none exists). Prints the reason on
# stdout and fails when it cannot.
start_cluster() {
  if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "nothing answers on $PG_HOST:$PG_PORT and there is no pg_ctlcluster (postgresql-common) to start a cluster"
    return 1
  fi
  local ver name port rest
  local found=""
  while read -r ver name port rest; do
    if [[ "$port" == "$PG_PORT" ]]; then
      found="$ver $name"
      break
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
  if [[ -z "$found" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
      echo "no cluster on port $PG_PORT, and creating one needs root"
      return 1
    fi
    ver="$("$BIN/postgres" --version | grep -Eo '[0-9]+' | head -1)"
    name=main
    if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" {f = 1} END {exit !f}'; then
      name=bank_test
    fi
    say "creating cluster $ver/$name on port $PG_PORT (trust auth)"
    if ! pg_createcluster -p "$PG_PORT" "$ver" "$name" -- --auth=trust >&2; then
      echo "pg_createcluster $ver $name failed"
      return 1
    fi
    printf '%s %s\n' "$ver" "$name" >"$STATE/created-cluster"
    found="$ver $name"
  fi
  read -r ver name <<<"$found"
  say "starting cluster $ver/$name"
  if ! pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2; then
    echo "pg_ctlcluster $ver $name start failed (see /var/log/postgresql/postgresql-$ver-$name.log)"
    return 1
  fi
  printf '%s %s\n' "$ver" "$name" >"$STATE/started-postgres"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until pg_ready; do
    if ((SECONDS >= deadline)); then
      echo "cluster $ver/$name started but $PG_HOST:$PG_PORT does not answer after ${WAIT_SECONDS}s"
      return 1
    fi
    sleep 0.5
  done
}

# PostgreSQL on 5432 plus a fresh database, recorded in STATE/database; or prints why not and fails.
provide_database() {
  if ! pg_ready; then
    say "nothing answers on $PG_HOST:$PG_PORT; starting PostgreSQL"
    start_cluster || return 1
  fi
  local db=""
  if [[ -f "$STATE/database" ]]; then
    db="$(cat "$STATE/database")"
    if [[ "$(psql_main "SELECT count(*) FROM pg_database WHERE datname = '$db'" 2>/dev/null || true)" != 1 ]]; then
      db=""
    fi
  fi
  if [[ -z "$db" ]]; then
    db="bank_test_$(date +%Y%m%d_%H%M%S)_$$"
    local err
    if ! err="$(psql_main "CREATE DATABASE $db" 2>&1)"; then
      echo "CREATE DATABASE $db on $PG_HOST:$PG_PORT as postgres failed: $err"
      return 1
    fi
    printf '%s\n' "$db" >"$STATE/database"
    say "database $db created on $PG_HOST:$PG_PORT"
  else
    say "database $db already there"
  fi
}

# The ports this script listens on start below Linux's ephemeral range (32768-60999 by default):
# a port in it can be the local port of any outgoing connection at that moment, and a listener
# then fails with "Address already in use" though nothing listens there (seen once: the pair's
# standby, three attempts in a row, 2026-12-05).
port_taken() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# free_port FROM: the first port >= FROM nothing listens on.
free_port() {
  local p="$1"
  while ((p < $1 + 1000 && p <= 65535)); do
    if ! port_taken "$p"; then
      printf '%s\n' "$p"
      return 0
    fi
    p=$((p + 1))
  done
  return 1
}

# The primary/standby pair, in STATE/pg-pair. Sets PRIMARY_URL and STANDBY_URL, or prints why not
# and fails.
provide_pair() {
  local dir="$STATE/pg-pair" out="" from="${BANK_PG_PAIR_PORT:-25433}" p1 p2 attempt
  if [[ -f "$STATE/pair-ports" && -f "$dir/.pg-pair" ]]; then
    read -r p1 p2 <"$STATE/pair-ports"
    out="$(PG_BINDIR="$BIN" bash "$PAIR_SCRIPT" start "$dir" "$p1" "$p2")" || {
      echo "the pair in $dir is not running as expected (see the messages above)"
      return 1
    }
  else
    for attempt in 1 2 3; do
      if ! { p1="$(free_port "$from")" && p2="$(free_port $((p1 + 1)))"; }; then
        echo "no two free loopback ports from $from"
        return 1
      fi
      say "starting a PostgreSQL pair on 127.0.0.1:$p1 (primary) and :$p2 (standby)"
      printf '%s %s\n' "$p1" "$p2" >"$STATE/pair-ports"
      if out="$(PG_BINDIR="$BIN" bash "$PAIR_SCRIPT" start "$dir" "$p1" "$p2")"; then
        break
      fi
      out=""
      bash "$PAIR_SCRIPT" stop "$dir" || true
      rm -f "$STATE/pair-ports"
      ((attempt < 3)) && say "pair start failed (attempt $attempt); trying other ports"
      from=$((p2 + 1))
    done
    if [[ -z "$out" ]]; then
      echo "scripts/pg-pair.sh start failed 3 times (see the messages above)"
      return 1
    fi
  fi
  PRIMARY_URL="$(sed -n 's/^PRIMARY_URL=//p' <<<"$out")"
  STANDBY_URL="$(sed -n 's/^STANDBY_URL=//p' <<<"$out")"
  [[ -n "$PRIMARY_URL" && -n "$STANDBY_URL" ]] || {
    echo "pg-pair.sh printed no URLs"
    return 1
  }
}

# The moto server (an AWS API emulator) on a free loopback port, in the background. Sets MOTO_URL,
# or prints why not and fails.
provide_moto() {
  local venv="${BANK_MOTO_VENV:-${HOME:-/root}/.cache/bank-moto-venv}" port i
  if [[ ! -x "$venv/bin/moto_server" ]]; then
    say "installing moto[server] into $venv (PyPI)"
    command -v python3 >/dev/null || {
      echo "python3 is missing (moto needs it)"
      return 1
    }
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "moto[server]"; } >&2 || {
      echo "pip could not install moto[server] into $venv"
      return 1
    }
  fi
  port="$(free_port "${BANK_MOTO_PORT:-25500}")" || {
    echo "no free loopback port for moto"
    return 1
  }
  say "starting moto on 127.0.0.1:$port"
  # One request at a time (see moto_serialized.py: moto's conditional writes are not atomic).
  nohup "$venv/bin/python" "$SCRIPTS/moto_serialized.py" 127.0.0.1 "$port" </dev/null >"$STATE/moto.log" 2>&1 &
  echo "$!" >"$STATE/moto.pid"
  for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
    if port_taken "$port"; then
      MOTO_URL="http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$STATE/moto.pid")" 2>/dev/null || {
      echo "moto exited at start (see $STATE/moto.log)"
      return 1
    }
    sleep 0.1
  done
  echo "moto did not answer on 127.0.0.1:$port within ${WAIT_SECONDS}s"
  return 1
}

# redis_ping PORT: a Redis on 127.0.0.1:PORT answers PING (redis-cli when installed, else a raw
# RESP PING over bash's /dev/tcp).
redis_ping() {
  if command -v redis-cli >/dev/null; then
    [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
  else
    timeout 2 bash -c 'exec 4<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&4 && read -r line <&4 && [[ "$line" == +PONG* ]]' _ "$1" 2>/dev/null
  fi
}

# Redis: the shared one when it answers, else one of our own (no persistence) on a free loopback
# port. Sets REDIS_URL, or prints why not and fails.
provide_redis() {
  local shared="${BANK_REDIS_SHARED_PORT:-6379}" port i
  if redis_ping "$shared"; then
    say "using Redis on 127.0.0.1:$shared"
    REDIS_URL="redis://127.0.0.1:$shared"
    return 0
  fi
  if ! command -v redis-server >/dev/null; then
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
      echo "redis-server is not installed (and this is not root with apt-get to install it)"
      return 1
    fi
    say "installing redis-server (apt-get)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server || {
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
    }; } >&2 || {
      echo "apt-get could not install redis-server"
      return 1
    }
  fi
  port="$(free_port "${BANK_REDIS_PORT:-25600}")" || {
    echo "no free loopback port for Redis"
    return 1
  }
  say "starting redis-server on 127.0.0.1:$port (no persistence)"
  nohup redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$STATE" \
    </dev/null >"$STATE/redis.log" 2>&1 &
  echo "$!" >"$STATE/redis.pid"
  for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
    if redis_ping "$port"; then
      REDIS_URL="redis://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$STATE/redis.pid")" 2>/dev/null || {
      echo "redis-server exited at start (see $STATE/redis.log)"
      return 1
    }
    sleep 0.1
  done
  echo "redis-server did not answer on 127.0.0.1:$port within ${WAIT_SECONDS}s"
  return 1
}

# Everything `start` does but print: run with fd 3 closed, so the servers it starts do not hold
# the caller's stdout open (a `$(services.sh start)` would otherwise wait for them to exit).
start_all() {
  if [[ -n "${BANK_SERVICES_DIR:-}" ]]; then
    STATE="$BANK_SERVICES_DIR"
    mkdir -p -- "$STATE"
  else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/bank-services.XXXXXX")"
  fi
  STATE="$(cd -- "$STATE" && pwd -P)"
  if [[ ! -f "$STATE/$MARKER" && -n "$(find "$STATE" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
    die "state folder $STATE is not empty and was not made by services.sh"
  fi
  : >"$STATE/$MARKER"
  # The pair's servers run as the postgres user when we are root: it must reach STATE/pg-pair.
  chmod 755 "$STATE"
  say "state in $STATE"

  local exports=("BANK_SERVICES_STATE=$STATE") why=""
  BIN="$(find_bindir || true)"
  if [[ -z "$BIN" ]]; then
    if why="$(install_postgres)"; then
      BIN="$(find_bindir || true)"
      [[ -n "$BIN" ]] || why="apt-get installed postgresql but no PostgreSQL bin folder was found"
      trust_installed_cluster
    fi
  fi

  if [[ -z "$BIN" ]]; then
    unavailable "PostgreSQL (database and primary/standby pair)" "$why"
  else
    say "PostgreSQL binaries in $BIN"
    if why="$(provide_database)"; then
      # provide_database ran in a subshell: read back what it recorded.
      exports+=("BANK_TEST_DATABASE_URL=postgres://postgres@$PG_HOST:$PG_PORT/$(cat "$STATE/database")")
    else
      unavailable "PostgreSQL on $PG_HOST:$PG_PORT" "$why"
    fi
    if why="$(provide_pair && printf 'PRIMARY_URL=%s\nSTANDBY_URL=%s\n' "$PRIMARY_URL" "$STANDBY_URL")"; then
      exports+=("BANK_TEST_PRIMARY_URL=$(sed -n 's/^PRIMARY_URL=//p' <<<"$why")")
      exports+=("BANK_TEST_STANDBY_URL=$(sed -n 's/^STANDBY_URL=//p' <<<"$why")")
      exports+=("BANK_TEST_PG_BINDIR=$BIN" "BANK_PG_PAIR_SCRIPT=$PAIR_SCRIPT")
    else
      unavailable "PostgreSQL primary/standby pair" "$why"
    fi
  fi
  if why="$(provide_moto && printf '%s\n' "$MOTO_URL")"; then
    exports+=("BANK_TEST_AWS_ENDPOINT=$why")
    # The emulator's dummy credentials, for servers a test starts in its own process on the
    # AWS backend (the SDK's standard chain reads them); never real ones.
    exports+=("AWS_ACCESS_KEY_ID=testing" "AWS_SECRET_ACCESS_KEY=testing" "AWS_EC2_METADATA_DISABLED=true")
  else
    unavailable "the moto AWS emulator (S3, SQS, SNS, DynamoDB)" "$why"
  fi
  if why="$(provide_redis && printf '%s\n' "$REDIS_URL")"; then
    exports+=("BANK_TEST_REDIS_URL=$why")
  else
    unavailable "Redis (view cache, shared rate limits)" "$why"
  fi

  local line
  : >"$STATE/services.env"
  for line in "${exports[@]}"; do
    printf 'export %s=%q\n' "${line%%=*}" "${line#*=}" >>"$STATE/services.env"
  done
  say "exports written to $STATE/services.env"
}

cmd_start() {
  start_all 3>&-
  cat "$STATE/services.env" >&3

  if ((${#MISSING[@]} > 0)) && [[ "$REQUIRE" == 1 ]]; then
    say "error: BANK_REQUIRE_SERVICES=1 and ${#MISSING[@]} service(s) missing; \`$0 stop $STATE\` undoes the rest"
    exit 1
  fi
}

cmd_stop() {
  STATE="${1:-${BANK_SERVICES_STATE:-}}"
  [[ -n "$STATE" ]] || die "stop: which state folder? (argument, or BANK_SERVICES_STATE)"
  if [[ ! -d "$STATE" ]]; then
    say "$STATE does not exist; nothing to stop"
    return 0
  fi
  if [[ ! -f "$STATE/$MARKER" ]]; then
    if [[ -z "$(find "$STATE" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
      rmdir -- "$STATE"
      return 0
    fi
    die "$STATE was not made by services.sh (no $MARKER); leaving it alone"
  fi
  BIN="$(find_bindir || true)"
  local ok=1

  # 1. The fresh database. Each step forgets its record once done, so a second stop retries only
  # what failed.
  if [[ -f "$STATE/database" ]]; then
    local db
    db="$(cat "$STATE/database")"
    if [[ -z "$BIN" ]] || ! pg_ready; then
      say "warning: $PG_HOST:$PG_PORT does not answer; database $db is left behind"
      rm -f "$STATE/database"
    else
      local force="" version
      version="$(psql_main 'SHOW server_version_num' 2>/dev/null || echo 0)"
      if [[ "$version" =~ ^[0-9]+$ ]] && ((version >= 130000)); then
        force=" WITH (FORCE)"
      fi
      if psql_main "DROP DATABASE IF EXISTS $db$force" >&2; then
        say "database $db dropped"
        rm -f "$STATE/database"
      else
        say "error: could not drop database $db"
        ok=0
      fi
    fi
  fi

  # 2. The pair.
  if [[ -e "$STATE/pg-pair" ]]; then
    if PG_BINDIR="$BIN" bash "$PAIR_SCRIPT" stop "$STATE/pg-pair"; then
      rm -f "$STATE/pair-ports"
    else
      say "error: could not stop the pair in $STATE/pg-pair"
      ok=0
    fi
  else
    rm -f "$STATE/pair-ports"
  fi

  # 3. The moto server.
  if [[ -f "$STATE/moto.pid" ]]; then
    local pid
    pid="$(cat "$STATE/moto.pid")"
    if kill "$pid" 2>/dev/null; then
      say "moto (pid $pid) stopped"
    fi
    rm -f "$STATE/moto.pid" "$STATE/moto.log"
  fi

  # 4. A Redis of our own (the shared one is left alone).
  if [[ -f "$STATE/redis.pid" ]]; then
    local redis_pid
    redis_pid="$(cat "$STATE/redis.pid")"
    if kill "$redis_pid" 2>/dev/null; then
      say "redis-server (pid $redis_pid) stopped"
    fi
    rm -f "$STATE/redis.pid" "$STATE/redis.log"
  fi

  # 5. PostgreSQL on 5432, only when `start` started it.
  if [[ -f "$STATE/started-postgres" ]]; then
    local ver name
    read -r ver name <"$STATE/started-postgres"
    say "stopping cluster $ver/$name (services.sh started it)"
    if pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop -m fast >&2; then
      rm -f "$STATE/started-postgres"
    elif ! pg_lsclusters -h 2>/dev/null | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n && $4 == "online" {f = 1} END {exit !f}'; then
      say "cluster $ver/$name is already down"
      rm -f "$STATE/started-postgres"
    else
      say "error: could not stop cluster $ver/$name"
      ok=0
    fi
  fi

  ((ok)) || die "some services could not be stopped; state kept in $STATE (run stop again)"
  # A cluster this script created is kept (stopped): its record only says so.
  if [[ -f "$STATE/created-cluster" ]]; then
    say "note: cluster $(cat "$STATE/created-cluster") was created by services.sh and is kept (stopped)"
  fi
  rm -f "$STATE/services.env" "$STATE/created-cluster" "$STATE/installed-postgres" "$STATE/$MARKER"
  if rmdir -- "$STATE" 2>/dev/null; then
    say "stopped; $STATE removed"
  else
    say "warning: $STATE holds files services.sh did not write; left in place"
  fi
}

(($# >= 1)) || usage
case "$1" in
  start)
    (($# == 1)) || usage
    cmd_start
    ;;
  stop)
    (($# <= 2)) || usage
    cmd_stop "${2:-}"
    ;;
  *) usage ;;
esac
