#!/usr/bin/env bash
# The whole test suite, set-up included: system packages, virtualenv, PostgreSQL, Redis, migrations.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop' EXIT
.venv/bin/dialer db migrate
.venv/bin/python -m pytest "$@"
