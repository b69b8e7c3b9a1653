#!/usr/bin/env bash
# notify's own deployables in the background, each with the command its image runs:
#   scripts/services.sh start|stop|status [api|email|whatsapp|sandbox]...   (default: all four)
# Logs: .local/log/<name>.log; pids: .local/run/<name>.pid.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/stack.env
source "$ROOT/scripts/stack.env"
PY=$ROOT/.venv/bin/python
ALL=(sandbox api email whatsapp)

health_url() {
  case $1 in
    api) echo "http://127.0.0.1:${API_PORT:-8080}/healthz" ;;
    email) echo "http://127.0.0.1:8081/healthz" ;;
    whatsapp) echo "http://127.0.0.1:8082/healthz" ;;
    sandbox) echo "http://127.0.0.1:$SANDBOX_PORT/healthz" ;;
  esac
}

start_one() {
  local name=$1 COMPONENT=$1
  if is_running "$name" "functions.$name"; then
    log "already running (pid $(cat "$(pid_file "$name")"))"
    return
  fi
  local port_env=(LOG_LEVEL="${LOG_LEVEL:-INFO}")
  case $name in
    email) port_env+=(WORKER_HTTP_PORT=8081) ;;
    whatsapp) port_env+=(WORKER_HTTP_PORT=8082) ;;
  esac
  # A simple command in the background, so $! is the server itself (env, setsid and nohup all exec);
  # stdin and inherited descriptors closed: the server must not hold the caller's terminal or pipes.
  cd "$ROOT"
  env "${port_env[@]}" setsid nohup "$PY" -m "functions.$name" </dev/null >>"$LOG_DIR/$name.log" 2>&1 3>&- &
  echo $! >"$(pid_file "$name")"
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$(health_url "$name")" 2>/dev/null; do
    is_running "$name" || die "exited during start-up"
    ((SECONDS < deadline)) || die "not healthy after 30 s"
    sleep 0.3
  done
  log "up (pid $(cat "$(pid_file "$name")"), log $LOG_DIR/$name.log)"
}

stop_one() {
  local name=$1 COMPONENT=$1 pid
  if ! is_running "$name" "functions.$name"; then
    rm -f "$(pid_file "$name")"
    return
  fi
  pid=$(cat "$(pid_file "$name")")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$(pid_file "$name")"
  log "stopped"
}

status_one() {
  local name=$1
  if is_running "$name" "functions.$name"; then
    echo "$name: running (pid $(cat "$(pid_file "$name")")), log $LOG_DIR/$name.log"
  elif [[ -f $(pid_file "$name") ]]; then
    echo "$name: CRASHED (pid file left behind); see $LOG_DIR/$name.log"
    return 1
  else
    echo "$name: stopped"
    return 1
  fi
}

command=${1:-status}
shift || true
names=("$@")
((${#names[@]})) || names=("${ALL[@]}")
rc=0
for name in "${names[@]}"; do
  case $command in
    start) start_one "$name" ;;
    stop) stop_one "$name" ;;
    status) status_one "$name" || rc=1 ;;
    *) echo "usage: $0 start|stop|status [api|email|whatsapp|sandbox]..." >&2; exit 2 ;;
  esac
done
exit $rc
