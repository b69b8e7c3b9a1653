#!/usr/bin/env bash
# Creates .venv and installs notify with its dev tools (and `task`, from PyPI's go-task-bin) when
# pyproject.toml changed since the last install. Idempotent and quick when nothing changed.
set -euo pipefail
COMPONENT=bootstrap
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV=$ROOT/.venv
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)

if [[ ! -f $stamp ]]; then
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV" || {
    log "python venv missing: installing python3-venv (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$VENV"
  }
  log "installing Python dependencies into .venv"
  "$VENV/bin/python" -m pip install -q --upgrade pip >>"$LOG_DIR/bootstrap.log" 2>&1
  "$VENV/bin/python" -m pip install -q -e "${ROOT}[dev,operator]" >>"$LOG_DIR/bootstrap.log" 2>&1 ||
    die "pip install failed"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
