#!/usr/bin/env bash
# The demo campaign on the embedded default: the simulated FreeSWITCH plus a PostgreSQL and a
# Redis started here. Set FREESWITCH_URL, DATABASE_URL or REDIS_URL to use real servers instead.
# Extra arguments go to `dialer demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop' EXIT
.venv/bin/dialer db migrate
.venv/bin/dialer demo "$@"
