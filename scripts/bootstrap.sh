#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (only when missing), a virtualenv in .venv, and the package itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=()
if [ -z "${DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  need_apt+=(redis-server)
fi
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
# espeak-ng and sox build the AMD benchmark corpus and some test audio; flite and Festival
# (with its three English voices) the corpora of other synthesisers (benchmarks.amd.corpus
# --engine flite|festival).
for tool in espeak-ng sox flite festival; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
for pkg in festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts the packaged services on install; we run our own throwaway ones.
  for svc in redis-server postgresql; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating virtualenv .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the package and test dependencies"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
