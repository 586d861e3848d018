#!/usr/bin/env bash
# The demo campaign on the embedded default: the simulated FreeSWITCH plus a PostgreSQL and a
# Redis started here. Set FREESWITCH_URL, DATABASE_URL or REDIS_URL to use real servers instead.
# Extra arguments go to `dialer demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
# services.sh leaves alone a server named by DATABASE_URL / REDIS_URL: stop with the values
# from before `start` exported them, so the servers started here are stopped again
SERVICES_ENV=(DATABASE_URL="${DATABASE_URL:-}" REDIS_URL="${REDIS_URL:-}")
eval "$(bash scripts/services.sh start)"
trap 'env "${SERVICES_ENV[@]}" bash scripts/services.sh stop' EXIT
.venv/bin/dialer db migrate
.venv/bin/dialer demo "$@"
