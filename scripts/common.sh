# shellcheck shell=bash
# Sourced by scripts/*.sh: project paths and small helpers for the local infrastructure.
# The sourcing script sets COMPONENT (its log is $LOG_DIR/$COMPONENT.log) before sourcing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
LOG_DIR="$LOCAL/log"
RUN_DIR="$LOCAL/run"
mkdir -p "$LOG_DIR" "$RUN_DIR"

log() { printf '[%s] %s\n' "${COMPONENT:-infra}" "$*" >&2; }

# die MESSAGE: print MESSAGE, where the component's log is and its last 30 lines, then exit 1.
die() {
  local logfile="$LOG_DIR/${COMPONENT:-infra}.log"
  log "ERROR: $*"
  log "log file: $logfile"
  if [[ -s $logfile ]]; then
    echo "----- last 30 lines of $logfile -----" >&2
    tail -n 30 "$logfile" >&2
    echo "-----" >&2
  fi
  exit 1
}

# port_open HOST PORT: true when a TCP connection to HOST:PORT succeeds.
# shellcheck disable=SC2016 # $1/$2 expand in the child shell
port_open() { timeout 2 bash -c ': <>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# wait_for_port HOST PORT TIMEOUT_SECONDS: true once HOST:PORT accepts connections, false on timeout.
wait_for_port() {
  local deadline=$((SECONDS + ${3:-30}))
  until port_open "$1" "$2"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# lock NAME: hold .local/run/NAME.lock (fd 9) until the script exits, so concurrent starts/stops queue.
# Close fd 9 (`9>&-`) on anything started in the background, or it keeps the lock.
lock() {
  exec 9>"$RUN_DIR/$1.lock"
  flock -w 300 9 || die "timed out waiting for $RUN_DIR/$1.lock"
}

pid_file() { echo "$RUN_DIR/$1.pid"; }

# is_running NAME [PATTERN]: true when .local/run/NAME.pid names a live process
# (whose command line contains PATTERN, if given, to survive pid reuse).
is_running() {
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z ${2:-} ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# ensure_packages PACKAGE...: apt-get install the Debian packages not installed yet (output to the component's log).
ensure_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} from Debian"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >>"$LOG_DIR/${COMPONENT:-infra}.log" 2>&1 || die "apt-get install ${missing[*]} failed"
}

# start_daemon NAME LOG COMMAND...: COMMAND in the background as NAME, detached (its own session), its pid in
# .local/run; nothing when NAME already runs that command.
start_daemon() {
  local name="$1" logfile="$2"; shift 2
  if is_running "$name" "$1"; then log "$name already running"; return; fi
  log "starting $name (log $logfile)"
  setsid nohup "$@" >>"$logfile" 2>&1 9>&- &
  echo $! >"$(pid_file "$name")"
}

# stop_daemon NAME: SIGTERM, up to 10 s, then SIGKILL; the pid file goes.
stop_daemon() {
  local name="$1" pid
  is_running "$name" || { rm -f "$(pid_file "$name")"; return 0; }
  pid="$(cat "$(pid_file "$name")")"
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(pid_file "$name")"
}
