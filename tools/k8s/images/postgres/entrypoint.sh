#!/bin/bash
# First start (an empty PGDATA): initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its password,
# password (scram) logins over TCP, then POSTGRES_DB created on a server that listens on no TCP address. Every
# start: the server in the foreground (PID 1, so SIGINT from the kubelet is a fast shutdown), listening on all
# addresses.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  [[ -n ${POSTGRES_PASSWORD:-} ]] || { echo "entrypoint: POSTGRES_PASSWORD must be set on first start" >&2; exit 1; }
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  initdb --pgdata "$PGDATA" --username "$user" --pwfile <(printf '%s\n' "$POSTGRES_PASSWORD") \
    --encoding UTF8 --locale C.UTF-8 --auth-local trust --auth-host scram-sha-256
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl --pgdata "$PGDATA" --wait --silent --options "-c listen_addresses=''" start
  if [[ $db != postgres ]]; then
    psql --username "$user" --dbname postgres --no-psqlrc --set ON_ERROR_STOP=1 \
      --command "CREATE DATABASE \"$db\" OWNER \"$user\""
  fi
  pg_ctl --pgdata "$PGDATA" --wait --silent --mode fast stop
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
