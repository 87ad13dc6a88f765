"""Build the Compose stack's images on a machine that reaches no container registry.

    python -m sandbox.runtime.compose.images            # build what is missing or stale
    python -m sandbox.runtime.compose.images --env      # print KEY=image lines for compose/.env

Every image comes from Debian packages and the sandbox's own pinned inputs:

    laddr-sandbox/debian:bookworm     mmdebstrap's minbase root filesystem, `docker import`ed
    laddr-sandbox/kafka:<v>           Debian's Java 17 + the jars of sandbox/brokers/kafka-jars.lock
    laddr-sandbox/zookeeper:<v>       the same image, started as ZooKeeper
    laddr-sandbox/redis:bookworm      Debian's redis-server
    laddr-sandbox/sandbox:latest      compose/Dockerfile: Debian's python3, the project from a wheelhouse

The compose file names the upstream images by default (confluentinc/cp-kafka…);
the env lines above swap in these. Cached: each image carries a label with the
digest of its inputs (recipe, build context, base image id) and is rebuilt only
when that digest changes. Only the standard library is used (no docker SDK).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.runtime.compose.defaults import DEFAULT_IMAGES

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "compose"
IMAGES_DIR = COMPOSE_DIR / "images"
WHEELHOUSE = COMPOSE_DIR / ".wheelhouse"
LABEL = "org.laddr-sandbox.inputs"
# How the images are made is an input too: an edit here rebuilds them.
RECIPE = Path(__file__).read_bytes()
PREFIX = "laddr-sandbox/"


DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
MMDEBSTRAP = [
    "mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
    "--aptopt=Acquire::Languages \"none\"",
    # No docs, man pages or translations: a third smaller, nothing here reads them.
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "bookworm", "-", *DEBIAN_SOURCES,
]


class ImageBuildError(RuntimeError):
    """One line saying which image failed and why."""


def _kafka_version() -> str:
    from sandbox.brokers.kafka_jars import kafka_version

    return kafka_version()


@dataclass(frozen=True)
class Tags:
    base: str = f"{PREFIX}debian:bookworm"
    redis: str = f"{PREFIX}redis:bookworm"
    sandbox: str = DEFAULT_IMAGES["SANDBOX_IMAGE"]

    @property
    def kafka(self) -> str:
        return f"{PREFIX}kafka:{_kafka_version()}"

    @property
    def zookeeper(self) -> str:
        return f"{PREFIX}zookeeper:{_kafka_version()}"


TAGS = Tags()


def local_image_env() -> dict[str, str]:
    """The compose variables that select the locally built images."""
    return {
        "ZOOKEEPER_IMAGE": TAGS.zookeeper,
        "KAFKA_IMAGE": TAGS.kafka,
        "REDIS_IMAGE": TAGS.redis,
        "SANDBOX_IMAGE": TAGS.sandbox,
        "SANDBOX_BASE_IMAGE": TAGS.base,
    }


# --- docker CLI helpers ------------------------------------------------------
def _docker(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["docker", *args], check=check, text=True, capture_output=True, **kw)
    except FileNotFoundError:
        raise ImageBuildError("the docker CLI is not installed: run scripts/setup-docker.sh") from None
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-15:]
        raise ImageBuildError(f"docker {args[0]} failed:\n" + "\n".join(tail)) from None


def image_label(tag: str) -> str | None:
    """The inputs digest an existing image was built from (None: no such image)."""
    out = _docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{LABEL}"}}}}|{{{{.Id}}}}', tag, check=False)
    return out.stdout.strip().split("|")[0] if out.returncode == 0 else None


def image_id(tag: str) -> str:
    return _docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()


def content_digest(*parts: str | bytes, tree: Path | None = None) -> str:
    """sha256 over strings and, when given, every file (name + bytes) under `tree`."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    if tree is not None:
        for f in sorted(tree.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                h.update(str(f.relative_to(tree)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def build_image(tag: str, context: Path, digest: str, args: dict[str, str], log) -> None:
    cmd = ["build", "--quiet", "--force-rm", "--label", f"{LABEL}={digest}", "-t", tag]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    # The classic builder: engine 20.10 has no buildx, and it needs nothing else.
    _docker(*cmd, str(context), env={**os.environ, "DOCKER_BUILDKIT": "0"})
    log(f"built {tag}")


def _timed(name: str, log, fn) -> None:
    t0 = time.monotonic()
    fn()
    log(f"  {name}: {time.monotonic() - t0:.1f}s")


# --- the images ----------------------------------------------------------------
def build_base(log=print) -> None:
    digest = content_digest(*MMDEBSTRAP)
    if image_label(TAGS.base) == digest:
        return log(f"cached {TAGS.base}")
    if not shutil.which("mmdebstrap"):
        raise ImageBuildError("mmdebstrap is not installed: run scripts/setup-docker.sh (apt-get install mmdebstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError(f"building {TAGS.base} with mmdebstrap needs root")
    # mmdebstrap writes a tarball to stdout; docker import reads it from stdin.
    with subprocess.Popen(MMDEBSTRAP, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as deb:
        imp = subprocess.run(
            ["docker", "import", "--change", f"LABEL {LABEL}={digest}", "--change", 'CMD ["bash"]', "-", TAGS.base],
            stdin=deb.stdout, capture_output=True, text=True, check=False,
        )
        deb.stdout.close()
        err = deb.stderr.read().decode(errors="replace")
    if deb.returncode != 0 or imp.returncode != 0:
        raise ImageBuildError(f"building {TAGS.base} failed: {(err or imp.stderr).strip().splitlines()[-5:]}")
    log(f"built {TAGS.base}")


def build_kafka(log=print) -> None:
    from sandbox.brokers.kafka_jars import LOCK_FILE, ensure_kafka_jars

    src = IMAGES_DIR / "kafka"
    base_id = image_id(TAGS.base)
    digest = content_digest(base_id, LOCK_FILE.read_bytes(), RECIPE, tree=src)
    if image_label(TAGS.kafka) != digest:
        jars = ensure_kafka_jars()
        with tempfile.TemporaryDirectory(prefix="laddr-kafka-image-") as tmp:
            ctx = Path(tmp)
            shutil.copytree(src, ctx, dirs_exist_ok=True)
            (ctx / "libs").mkdir()
            for jar in jars.glob("*.jar"):
                shutil.copyfile(jar, ctx / "libs" / jar.name)
                (ctx / "libs" / jar.name).chmod(0o644)  # the cache's jars are 0600; appuser reads them
            build_image(TAGS.kafka, ctx, digest, {"BASE_IMAGE": TAGS.base}, log)
    else:
        log(f"cached {TAGS.kafka}")
    zk_digest = content_digest(image_id(TAGS.kafka), tree=IMAGES_DIR / "zookeeper")
    if image_label(TAGS.zookeeper) != zk_digest:
        build_image(TAGS.zookeeper, IMAGES_DIR / "zookeeper", zk_digest, {"KAFKA_IMAGE": TAGS.kafka}, log)
    else:
        log(f"cached {TAGS.zookeeper}")


def build_redis(log=print) -> None:
    src = IMAGES_DIR / "redis"
    digest = content_digest(image_id(TAGS.base), RECIPE, tree=src)
    if image_label(TAGS.redis) == digest:
        return log(f"cached {TAGS.redis}")
    build_image(TAGS.redis, src, digest, {"BASE_IMAGE": TAGS.base}, log)


def _project_digest() -> str:
    h = [(ROOT / "pyproject.toml").read_bytes()]
    for name in ("sandbox", "agents_examples"):
        h.append(content_digest(name, tree=ROOT / name))
    return content_digest(*h)


def build_wheelhouse(log=print) -> None:
    """compose/.wheelhouse/{deps,app}: the project's wheel and every dependency's.

    Built from a copy of the project, so no build/ or *.egg-info lands in the
    tree. Wheels already in deps/ are reused (no download when nothing changed).
    """
    deps, app = WHEELHOUSE / "deps", WHEELHOUSE / "app"
    with tempfile.TemporaryDirectory(prefix="laddr-wheel-") as tmp:
        proj, out = Path(tmp) / "project", Path(tmp) / "wheels"
        proj.mkdir()
        shutil.copy2(ROOT / "pyproject.toml", proj)
        readme = ROOT / "README.md"
        (proj / "README.md").write_text(readme.read_text() if readme.exists() else "laddr-sandbox\n")
        for name in ("sandbox", "agents_examples"):
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "-w", str(out), f"{proj}[kafka]"]
        if deps.is_dir():
            cmd[4:4] = ["--find-links", str(deps)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise ImageBuildError("pip wheel failed: " + " | ".join(run.stderr.strip().splitlines()[-5:]))
        for d in (deps, app):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        for whl in out.glob("*.whl"):
            shutil.move(str(whl), app if whl.name.startswith("laddr_sandbox-") else deps)
    log(f"wheelhouse {WHEELHOUSE.relative_to(ROOT)}: {len(list(deps.glob('*.whl')))} dependency wheels")


def build_sandbox(log=print) -> None:
    files = [(COMPOSE_DIR / n).read_bytes() for n in ("Dockerfile", "healthcheck.py", ".dockerignore")]
    digest = content_digest(image_id(TAGS.base), RECIPE, _project_digest(), *files)
    if image_label(TAGS.sandbox) == digest:
        return log(f"cached {TAGS.sandbox}")
    build_wheelhouse(log)
    build_image(TAGS.sandbox, COMPOSE_DIR, digest, {"SANDBOX_BASE_IMAGE": TAGS.base}, log)


STEPS = {"base": build_base, "kafka": build_kafka, "redis": build_redis, "sandbox": build_sandbox}


def ensure_images(only: list[str] | None = None, log=print) -> dict[str, str]:
    """Build (or confirm cached) the images; returns local_image_env()."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    # One builder at a time (two test runs at once would rewrite the wheelhouse under each other).
    with open(WHEELHOUSE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, fn in STEPS.items():
            if name == "base" or not only or name in only:
                _timed(name, log, lambda fn=fn: fn(log))
    return local_image_env()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.runtime.compose.images", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma list of: kafka,redis,sandbox (the base is always ensured)")
    ap.add_argument("--env", action="store_true", help="print the KEY=image lines only, build nothing")
    ap.add_argument("--write-env", metavar="PATH", help="also set those keys in this .env file")
    ns = ap.parse_args(argv)
    if ns.env:
        print("\n".join(f"{k}={v}" for k, v in local_image_env().items()))
        return 0
    log = lambda line: print(f"[images] {line}", file=sys.stderr, flush=True)
    try:
        env = ensure_images([s for s in ns.only.split(",") if s], log)
    except ImageBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if ns.write_env:
        write_local_env(Path(ns.write_env), env, log)
    return 0


def write_local_env(path: Path, env: dict[str, str], log=print) -> None:
    """Point a compose .env at the local images (made from .env.example if missing).

    Kafka UI has no local image: where its upstream one is not here either,
    its profile is switched off so that `docker compose up -d` works as written.
    """
    from sandbox.config import read_env_file, write_env

    if not path.exists() and (COMPOSE_DIR / ".env.example").exists():
        shutil.copy2(COMPOSE_DIR / ".env.example", path)
    updates: dict[str, str | None] = dict(env)
    values = read_env_file(path)
    ui_image = values.get("KAFKA_UI_IMAGE") or DEFAULT_IMAGES["KAFKA_UI_IMAGE"]
    profiles = [p for p in values.get("COMPOSE_PROFILES", "").split(",") if p]
    if "ui" in profiles and image_label(ui_image) is None:
        updates["COMPOSE_PROFILES"] = ",".join(p for p in profiles if p != "ui")
        log(f"Kafka UI left out (COMPOSE_PROFILES): no image {ui_image} here and no registry to pull it from")
    write_env(path, updates)
    log(f"{path}: {', '.join(env)} point at the local images")


if __name__ == "__main__":
    sys.exit(main())
