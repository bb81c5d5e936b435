#!/usr/bin/env bash
# A throwaway PostgreSQL primary plus a streaming standby on loopback, for tests.
#
#   pg-pair.sh start DIR PRIMARY_PORT STANDBY_PORT
#       initdb a primary in DIR/primary, start it, pg_basebackup a standby into DIR/standby, start
#       it and wait (at most 30 s) until it is in recovery and streaming. Prints
#         PRIMARY_URL=postgres://postgres@127.0.0.1:PRIMARY_PORT/postgres
#         STANDBY_URL=postgres://postgres@127.0.0.1:STANDBY_PORT/postgres
#       If DIR already holds a running pair, only prints its URLs.
#   pg-pair.sh stop DIR            stop both servers (immediate) and remove DIR; safe when stopped
#   pg-pair.sh promote DIR         promote the standby and wait until it accepts writes
#   pg-pair.sh stop-primary DIR    stop only the primary (immediate), for failover tests
#
# Both servers listen on 127.0.0.1 only, with trust authentication for user postgres, and keep
# their Unix sockets in DIR (never in /var/run/postgresql). Logs: DIR/primary.log, DIR/standby.log.
# When run as root, the servers run as the `postgres` OS user (DIR is handed to it; private folders
# between /tmp or $TMPDIR and DIR, like a mktemp -d or a Rust tempdir, get o+x so it can reach DIR).
#
# Environment:
#   PG_BINDIR   PostgreSQL server binaries (default: the directory of `pg_ctl` on PATH, else the
#               newest /usr/lib/postgresql/*/bin)
#
# Messages go to stderr; stdout carries only the URL lines. Exits non-zero on any failure.
set -euo pipefail
# runuser, pg_ctlcluster and friends live in sbin, which a minimal PATH (cron, CI) may lack.
export PATH="$PATH:/usr/sbin:/sbin"

WAIT_SECONDS=30
MARKER=.pg-pair

die() {
  printf 'pg-pair: error: %s\n' "$*" >&2
  exit 1
}
say() {
  printf 'pg-pair: %s\n' "$*" >&2
}
usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# bindir_ok DIR: DIR holds every binary this script runs.
bindir_ok() {
  local tool
  for tool in pg_ctl initdb postgres pg_basebackup psql; do
    [[ -x "$1/$tool" ]] || return 1
  done
}

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then
    bindir_ok "$PG_BINDIR" || die "PG_BINDIR=$PG_BINDIR lacks one of pg_ctl, initdb, postgres, pg_basebackup, psql"
    printf '%s\n' "$PG_BINDIR"
    return
  fi
  local candidates=() ctl dir
  # pg_ctl on PATH is often a symlink (e.g. /usr/local/bin/pg_ctl): follow it to the real folder.
  if ctl="$(command -v pg_ctl 2>/dev/null)"; then
    candidates+=("$(dirname "$(readlink -f "$ctl")")")
  fi
  if command -v pg_config >/dev/null 2>&1; then
    candidates+=("$(pg_config --bindir 2>/dev/null || true)")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  for dir in "${candidates[@]}"; do
    if [[ -n "$dir" ]] && bindir_ok "$dir"; then
      printf '%s\n' "$dir"
      return
    fi
  done
  die "no PostgreSQL server binaries found (set PG_BINDIR, or install postgresql)"
}

# Runs a command as the OS user that owns the clusters: `postgres` when we are root (the server
# refuses to run as root), ourselves otherwise. From `/`, so an unreadable working directory does
# not bother the PostgreSQL tools.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# psql PORT SQL: one value, no decoration; fails quickly when nothing answers.
query() {
  PGCONNECT_TIMEOUT=3 timeout 15 "$BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

port_taken() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_port() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1024 || $1 > 65535)); then
    die "port '$1' is not a number in 1024..65535"
  fi
}

# is_running DATADIR: a postmaster runs on that data directory.
is_running() {
  [[ -f "$1/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# port_of DATADIR: the last `port = N` in its postgresql.conf.
port_of() {
  sed -n "s/^port = \([0-9]*\).*/\1/p" "$1/postgresql.conf" | tail -1
}

urls() {
  printf 'PRIMARY_URL=postgres://postgres@127.0.0.1:%s/postgres\n' "$1"
  printf 'STANDBY_URL=postgres://postgres@127.0.0.1:%s/postgres\n' "$2"
}

# stop_server DATADIR: immediate shutdown; nothing to do when it is not running. Returns non-zero
# (with a message) when the server would not stop.
stop_server() {
  local data="$1"
  [[ -f "$data/postmaster.pid" ]] || return 0
  if ! as_owner "$BIN/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    return 0
  fi
  if ! as_owner "$BIN/pg_ctl" stop -D "$data" -m immediate -w -t "$WAIT_SECONDS" >&2; then
    say "error: could not stop the server on $data (see ${data}.log)"
    return 1
  fi
}

show_log_tail() {
  local log
  for log in "$DIR/primary.log" "$DIR/standby.log"; do
    if [[ -f "$log" ]]; then
      printf -- '--- last lines of %s ---\n' "$log" >&2
      tail -n 15 "$log" >&2 || true
    fi
  done
}

# The settings both servers share (the standby copies the primary's file, then gets its own port).
write_primary_conf() {
  local data="$1" port="$2"
  cat >>"$data/postgresql.conf" <<EOF

# --- pg-pair.sh ---
cluster_name = 'pg-pair-primary'
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 64MB
hot_standby = on
hot_standby_feedback = on
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 32MB
max_connections = 100
logging_collector = off
EOF
  cat >"$data/pg_hba.conf" <<EOF
# pg-pair.sh: a throwaway test pair on loopback, trust everywhere.
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF
}

# As root, DIR is often inside a private temporary folder (mktemp -d, Rust's tempfile: mode 700,
# owned by root), which the postgres user cannot pass through. Folders between the temporary root
# (/tmp, $TMPDIR) and DIR get search permission for others (o+x: pass through, not list). Folders
# elsewhere are left alone.
open_temp_parents() {
  local root parent
  for root in "${TMPDIR:-/tmp}" /tmp; do
    root="$(cd -- "$root" 2>/dev/null && pwd -P)" || continue
    [[ "$DIR" == "$root"/* ]] || continue
    parent="$(dirname -- "$DIR")"
    while [[ "$parent" == "$root"/* ]]; do
      if ! as_owner test -x "$parent"; then
        say "letting the postgres user pass through $parent (chmod o+x)"
        chmod o+x -- "$parent"
      fi
      parent="$(dirname -- "$parent")"
    done
  done
}

cmd_start() {
  local primary_port="$1" standby_port="$2"
  check_port "$primary_port"
  check_port "$standby_port"
  [[ "$primary_port" != "$standby_port" ]] || die "the two ports must differ"

  local primary="$DIR/primary" standby="$DIR/standby"

  # Already there?
  if [[ -f "$DIR/$MARKER" && (-d "$primary" || -d "$standby") ]]; then
    if [[ -d "$primary" && -d "$standby" ]] && is_running "$primary" && is_running "$standby"; then
      local pp sp
      pp="$(port_of "$primary")"
      sp="$(port_of "$standby")"
      if [[ "$pp" != "$primary_port" || "$sp" != "$standby_port" ]]; then
        say "warning: $DIR already runs a pair on ports $pp/$sp (asked for $primary_port/$standby_port); keeping it"
      fi
      say "pair in $DIR already running"
      urls "$pp" "$sp"
      return 0
    fi
    die "$DIR holds a pair that is not fully running (stopped, or its primary was stopped for a failover test); run \`$0 stop $DIR\` first"
  fi
  if [[ -f "$DIR/$MARKER" ]]; then
    # Leftovers (logs) of an earlier start that failed before initdb finished.
    find "$DIR" -mindepth 1 -maxdepth 1 ! -name "$MARKER" -exec rm -rf -- {} +
  elif [[ -n "$(find "$DIR" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
    die "$DIR is not empty and holds no pair; choose an empty or new directory"
  fi

  port_taken "$primary_port" && die "port $primary_port on 127.0.0.1 is already taken"
  port_taken "$standby_port" && die "port $standby_port on 127.0.0.1 is already taken"

  : >"$DIR/$MARKER"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$DIR" "$DIR/$MARKER"
    chmod 700 "$DIR"
    open_temp_parents
  fi
  as_owner test -w "$DIR" ||
    die "the postgres user cannot reach $DIR (a parent folder is closed to it; use a folder under ${TMPDIR:-/tmp})"

  # From here on, a failure stops whatever this call started and keeps DIR (the logs) for a look.
  trap 'rc=$?; if ((rc != 0)); then show_log_tail; say "start failed; stopping what was started (logs kept in $DIR; \`$0 stop $DIR\` removes it)"; stop_server "$standby" || true; stop_server "$primary" || true; fi' EXIT

  say "initdb $primary"
  as_owner "$BIN/initdb" -D "$primary" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  write_primary_conf "$primary" "$primary_port"
  say "starting the primary on 127.0.0.1:$primary_port"
  as_owner "$BIN/pg_ctl" start -D "$primary" -l "$DIR/primary.log" -w -t "$WAIT_SECONDS" >&2 ||
    die "the primary did not start (within ${WAIT_SECONDS}s; log: $DIR/primary.log)"

  say "pg_basebackup into $standby"
  as_owner timeout 120 "$BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$standby" \
    -R -X stream -C -S pg_pair_standby -c fast >&2 || die "pg_basebackup failed"
  cat >>"$standby/postgresql.conf" <<EOF

# --- pg-pair.sh (standby) ---
cluster_name = 'pg-pair-standby'
port = $standby_port
EOF
  say "starting the standby on 127.0.0.1:$standby_port"
  as_owner "$BIN/pg_ctl" start -D "$standby" -l "$DIR/standby.log" -w -t "$WAIT_SECONDS" >&2 ||
    die "the standby did not start (within ${WAIT_SECONDS}s; log: $DIR/standby.log)"

  local deadline=$((SECONDS + WAIT_SECONDS)) recovering="" streaming=""
  while ((SECONDS < deadline)); do
    recovering="$(query "$standby_port" 'SELECT pg_is_in_recovery()' 2>/dev/null || true)"
    streaming="$(query "$primary_port" \
      "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg-pair-standby' AND state = 'streaming'" \
      2>/dev/null || true)"
    if [[ "$recovering" == t && "$streaming" == 1 ]]; then
      break
    fi
    sleep 0.2
  done
  [[ "$recovering" == t ]] || die "the standby is not in recovery after ${WAIT_SECONDS}s (pg_is_in_recovery: '${recovering}')"
  [[ "$streaming" == 1 ]] || die "the primary's pg_stat_replication shows no streaming standby after ${WAIT_SECONDS}s"

  # Synchronous replication, as Aurora's storage quorum: a commit returns only once the standby
  # has it, so a failover loses nothing acknowledged. Set on the primary only (ALTER SYSTEM writes
  # its own postgresql.auto.conf, which is not replicated), so the promoted standby commits alone.
  query "$primary_port" "ALTER SYSTEM SET synchronous_standby_names = '\"pg-pair-standby\"'" >/dev/null ||
    die "cannot make the replication synchronous"
  query "$primary_port" "SELECT pg_reload_conf()" >/dev/null || die "cannot reload the primary's configuration"
  deadline=$((SECONDS + WAIT_SECONDS))
  local sync=""
  while ((SECONDS < deadline)); do
    sync="$(query "$primary_port" \
      "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg-pair-standby' AND sync_state = 'sync'" \
      2>/dev/null || true)"
    [[ "$sync" == 1 ]] && break
    sleep 0.2
  done
  [[ "$sync" == 1 ]] || die "the standby did not become synchronous within ${WAIT_SECONDS}s"

  trap - EXIT
  say "pair running in $DIR (primary 127.0.0.1:$primary_port, standby 127.0.0.1:$standby_port, synchronous streaming)"
  urls "$primary_port" "$standby_port"
}

require_pair() {
  [[ -f "$DIR/$MARKER" ]] || die "$DIR holds no pair (no $MARKER file)"
}

cmd_stop() {
  if [[ ! -e "$DIR" ]]; then
    say "$DIR does not exist; nothing to stop"
    return 0
  fi
  if [[ -z "$(find "$DIR" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
    rmdir -- "$DIR"
    say "$DIR was empty; removed"
    return 0
  fi
  require_pair
  local ok=1
  stop_server "$DIR/standby" || ok=0
  stop_server "$DIR/primary" || ok=0
  ((ok)) || die "$DIR kept: a server would not stop"
  rm -rf -- "$DIR"
  say "pair stopped, $DIR removed"
}

cmd_stop_primary() {
  require_pair
  stop_server "$DIR/primary" || die "the primary would not stop"
  say "primary stopped (standby left running)"
}

cmd_promote() {
  require_pair
  local standby="$DIR/standby" port
  is_running "$standby" || die "the standby in $DIR is not running"
  port="$(port_of "$standby")"
  local recovering
  recovering="$(query "$port" 'SELECT pg_is_in_recovery()')" || die "the standby on 127.0.0.1:$port does not answer"
  if [[ "$recovering" == t ]]; then
    say "promoting the standby on 127.0.0.1:$port"
    as_owner "$BIN/pg_ctl" promote -D "$standby" -w -t "$WAIT_SECONDS" >&2 || die "pg_ctl promote failed"
  else
    say "the standby on 127.0.0.1:$port is already promoted"
  fi
  # Accepts writes: out of recovery and able to take a transaction id (refused during recovery).
  local deadline=$((SECONDS + WAIT_SECONDS)) answer=""
  while ((SECONDS < deadline)); do
    answer="$(query "$port" "SELECT pg_is_in_recovery()::text || ' ' || (txid_current() > 0)::text" 2>/dev/null || true)"
    [[ "$answer" == "false true" ]] && break
    sleep 0.2
  done
  [[ "$answer" == "false true" ]] || die "the promoted standby on 127.0.0.1:$port does not accept writes after ${WAIT_SECONDS}s"
  say "the former standby on 127.0.0.1:$port accepts writes"
}

(($# >= 2)) || usage
command="$1"
DIR="$2"
[[ -n "$DIR" && "$DIR" != / ]] || die "DIR must be a directory other than /"
[[ "$DIR" != *[\'\\]* ]] || die "DIR must not contain quotes or backslashes: $DIR"

case "$command" in
  start)
    (($# == 4)) || usage
    mkdir -p -- "$DIR"
    DIR="$(cd -- "$DIR" && pwd -P)"
    # A Unix socket path has at most 107 bytes: DIR/.s.PGSQL.NNNNN.lock must fit.
    ((${#DIR} <= 80)) || die "DIR path is too long for a Unix socket directory (${#DIR} > 80 characters): $DIR"
    ;;
  stop | promote | stop-primary)
    (($# == 2)) || usage
    if [[ -d "$DIR" ]]; then
      DIR="$(cd -- "$DIR" && pwd -P)"
    fi
    ;;
  *) usage ;;
esac

BIN="$(find_bindir)"

case "$command" in
  start) cmd_start "$3" "$4" ;;
  stop) cmd_stop ;;
  promote) cmd_promote ;;
  stop-primary) cmd_stop_primary ;;
esac
