#!/usr/bin/env bash
# Sets up everything the sandbox needs on a fresh Debian/Ubuntu machine, idempotently:
# redis-server and Java 17 from apt (where missing), a virtualenv in .venv with the
# project installed, and Apache Kafka's jars from Maven Central (checksummed, cached per user).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PY=${PYTHON:-python3}
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# Debian's own python3 keeps venv/ensurepip in a separate package.
"$PY" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
java_ok() { command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }
java_ok || need_apt+=(openjdk-17-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The package starts a system-wide redis on 6379; the sandbox runs its own, so stop that one.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
say "installing laddr-sandbox into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[all,test]"

say "fetching Apache Kafka's jars (cached after the first time)"
.venv/bin/python -m sandbox.brokers.kafka_jars >/dev/null
say "ready: .venv/bin/laddr-sandbox"
