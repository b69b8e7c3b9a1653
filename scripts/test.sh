#!/usr/bin/env bash
# README command 2 (and CI's): install what is needed, start PostgreSQL and Kafka, run lint and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
.venv/bin/task test -- "$@"
