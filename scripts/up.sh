#!/usr/bin/env bash
# README command 1: on a fresh machine, install what is needed, bring up the whole local stack in the
# background and run the walkthrough (register a site, send an email and a WhatsApp message, show them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
.venv/bin/task up demo
