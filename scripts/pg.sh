#!/usr/bin/env bash
# PostgreSQL 15 for development and tests on 127.0.0.1:55432, data in .local/pg/data.
# Another instance beside it (the fault suite's): PG_NAME names its directory and log, PG_PORT its port,
# PG_EXTRA_LISTEN one more address to listen on (clients from its /24 may log in), and PG_DURABLE=1 keeps
# fsync and synchronous commits on, as production has them (a killed server then loses no acknowledged commit).
# Usage: scripts/pg.sh start|stop|status|url
set -euo pipefail
PG_NAME=${PG_NAME:-pg}
COMPONENT=$([[ $PG_NAME == pg ]] && echo postgres || echo "$PG_NAME")
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_PORT=${PG_PORT:-55432}
PG_EXTRA_LISTEN=${PG_EXTRA_LISTEN:-}
PG_DURABLE=${PG_DURABLE:-0}
PG_OS_USER=postgres # the server refuses to run as root
PG_DIR=$LOCAL/$PG_NAME
PG_DATA=$PG_DIR/data
PG_SOCK=$RUN_DIR/$PG_NAME
PG_LOG=$LOG_DIR/$COMPONENT.log
URL="postgresql://notify:notify@127.0.0.1:$PG_PORT/notify"

# as_pg CMD...: run CMD as the server's OS user (only needed when we are root).
as_pg() {
  if ((EUID == 0)); then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

ensure_binaries() {
  [[ -x $PG_BIN/pg_ctl ]] && return
  ((EUID == 0)) || die "no $PG_BIN/pg_ctl; install the postgresql-$PG_VERSION package"
  log "installing postgresql-$PG_VERSION (apt)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_VERSION"; } >>"$PG_LOG" 2>&1 ||
    die "apt-get install postgresql-$PG_VERSION failed"
  [[ -x $PG_BIN/pg_ctl ]] || die "postgresql-$PG_VERSION installed but $PG_BIN/pg_ctl is missing"
}

# Root only: the server user must exist, own its directories and reach them through ROOT's ancestors.
ensure_os_user() {
  ((EUID == 0)) || return 0
  id -u "$PG_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  local dir=$ROOT
  while [[ $dir != / ]]; do
    runuser -u "$PG_OS_USER" -- test -x "$dir" || { log "granting o+x on $dir so $PG_OS_USER can reach .local/pg"; chmod o+x "$dir"; }
    dir=$(dirname "$dir")
  done
  mkdir -p "$PG_DIR" "$PG_SOCK"
  touch "$PG_LOG"
  chown "$PG_OS_USER:" "$PG_DIR" "$PG_SOCK" "$PG_LOG"
}

init_once() {
  [[ -f $PG_DATA/PG_VERSION ]] && return
  log "initdb $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 || die "initdb failed"
  echo "include 'notify.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

# Rewritten on every start so edits here take effect at the next restart.
write_conf() {
  local durable=off listen=127.0.0.1
  ((PG_DURABLE)) && durable=on
  [[ -z $PG_EXTRA_LISTEN ]] || listen+=",$PG_EXTRA_LISTEN"
  as_pg tee "$PG_DATA/notify.conf" >/dev/null <<EOF
# Written by scripts/pg.sh: loopback (and PG_EXTRA_LISTEN) only; durability off unless PG_DURABLE=1.
listen_addresses = '$listen'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 256MB
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
timezone = 'UTC'
EOF
  {
    echo "# Written by scripts/pg.sh on every start."
    echo "local all all trust"
    echo "host all all 127.0.0.1/32 scram-sha-256"
    echo "host all all ::1/128 scram-sha-256"
    [[ -z $PG_EXTRA_LISTEN ]] || echo "host all all ${PG_EXTRA_LISTEN%.*}.0/24 scram-sha-256"
  } | as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null
}

ensure_role_and_db() {
  local sql="
SELECT 'CREATE ROLE notify' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'notify')\\gexec
ALTER ROLE notify LOGIN CREATEDB PASSWORD 'notify';
SELECT 'CREATE DATABASE notify OWNER notify' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'notify')\\gexec"
  "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 <<<"$sql" >>"$PG_LOG" 2>&1 ||
    die "creating role/database notify failed"
}

running() { [[ -x $PG_BIN/pg_ctl && -d $PG_DATA ]] && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }

start() {
  ensure_binaries
  ensure_os_user
  init_once
  write_conf
  if running; then
    log "already running on 127.0.0.1:$PG_PORT"
  else
    log "starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 >/dev/null 9>&- || die "pg_ctl start failed"
  fi
  wait_for_port 127.0.0.1 "$PG_PORT" 30 || die "port $PG_PORT not accepting connections"
  ensure_role_and_db
  log "ready: $URL"
}

stop() {
  if running; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null || die "pg_ctl stop failed"
    log "stopped"
  else
    log "not running"
  fi
}

case ${1:-} in
  start) lock "$COMPONENT" && start ;;
  stop) lock "$COMPONENT" && stop ;;
  status) if running; then log "running on 127.0.0.1:$PG_PORT"; else log "not running"; exit 3; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
