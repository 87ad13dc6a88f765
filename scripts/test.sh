#!/usr/bin/env bash
# The README's test command: sets up everything the tests need on a fresh machine
# (redis-server, Java 17, Kafka's jars, the Docker engine with locally built images),
# then runs the whole suite against the real brokers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if [ "${LADDR_TEST_DOCKER:-1}" = 1 ]; then
  ./scripts/setup-docker.sh
fi
exec .venv/bin/python -m pytest "$@"
