"""The image a Laddr project's api and workers run in under `--runtime compose --project DIR`.

The project's own Dockerfile starts `FROM python:3.11-slim`, which a machine that
reaches no registry cannot pull. This image is built instead, with images.py's
machinery (the local Debian base, the inputs label, the classic builder):

    laddr-sandbox/project:<hash of the requirements>
        compose/images/project/Dockerfile: Debian's python3 + a venv on laddr-sandbox/debian,
        the project's requirements.txt (+ the guide's aiokafka>=0.11.0) installed from a
        wheelhouse that `pip download` makes on the host, and sandbox/project/laddr_boot.py

The wheelhouse is cached per requirements (~/.cache/laddr-sandbox/project-wheelhouses/<key>),
the image by its inputs (requirements, recipe, base image): an unchanged project builds
nothing. Two projects with the same requirements share both.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.brokers.kafka_jars import cache_root
from sandbox.project.workers import BOOT
from sandbox.runtime.compose.images import (
    PREFIX, TAGS, ImageBuildError, build_base, build_image, content_digest, image_id, image_label,
)

# The image's Python: Debian bookworm's python3; the wheelhouse is downloaded for it, whatever runs this.
IMAGE_PYTHON = "3.11.2"
EXTRA_REQUIREMENTS = ("aiokafka>=0.11.0",)  # the guide's Kafka client, whatever requirements.txt says
BOOT_IN_IMAGE = "/opt/laddr-sandbox/laddr_boot.py"
PIP_TIMEOUT_S = 1800


def recipe_dir() -> Path:
    """compose/images/project of the sandbox's checkout, else of its installed copy (never the current folder's)."""
    from sandbox.runtime.compose.config import PACKAGED_DIR

    for folder in (Path(__file__).resolve().parents[3] / "compose", PACKAGED_DIR):
        if (folder / "images" / "project" / "Dockerfile").is_file():
            return folder / "images" / "project"
    raise ImageBuildError(f"{PACKAGED_DIR / 'images' / 'project' / 'Dockerfile'} is missing: reinstall laddr-sandbox")


def requirements_text(requirements: Path) -> str:
    own = requirements.read_text(encoding="utf-8", errors="replace") if requirements.is_file() else ""
    return own.rstrip("\n") + "\n# added by laddr-sandbox (the migration guide's Kafka client)\n" + "\n".join(EXTRA_REQUIREMENTS) + "\n"


def _key(text: str) -> str:
    lines = sorted(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def image_tag(requirements: Path) -> str:
    """The tag, from the requirements and the recipe only (no engine needed to name it)."""
    recipe = (recipe_dir() / "Dockerfile").read_bytes()
    return f"{PREFIX}project:" + content_digest(_key(requirements_text(requirements)), recipe, BOOT.read_bytes())[:12]


def wheelhouse(requirements: Path, log=print) -> Path:
    """A folder with a wheel for every requirement (and dependency), made once per requirements."""
    text = requirements_text(requirements)
    folder = cache_root() / "project-wheelhouses" / f"py{IMAGE_PYTHON}-{_key(text)}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        reqs = folder / "requirements.txt"
        reqs.write_text(text)
        # Wheels for the image's Python (Debian's 3.11.2: some releases need a newer 3.11), not this one's.
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(folder),
               "--only-binary=:all:", "--python-version", IMAGE_PYTHON, "--implementation", "cp",
               "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "--platform", "linux_x86_64",
               "-r", str(reqs)]
        log(f"making the wheelhouse for {requirements} (pip, first time only)")
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(folder, ignore_errors=True)
            raise ImageBuildError(f"pip took more than {PIP_TIMEOUT_S}s for {requirements}") from None
        if run.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            lines = [ln for ln in (run.stderr + run.stdout).splitlines() if ln.strip()]
            raise ImageBuildError(f"the requirements of {requirements} cannot install: "
                                  f"{lines[-1].strip() if lines else f'pip exit {run.returncode}'}")
        marker.write_text(text)
    return folder


def ensure_project_image(requirements: Path, log=print) -> str:
    """The project's image, built now if missing or stale; returns its tag."""
    tag = image_tag(requirements)
    build_base(log)
    recipe = recipe_dir()
    digest = content_digest(image_id(TAGS.base), tag, tree=recipe)
    if image_label(tag) == digest:
        return tag
    wheels = wheelhouse(requirements, log)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="laddr-project-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(recipe / "Dockerfile", ctx / "Dockerfile")
        shutil.copytree(wheels, ctx / "wheels", ignore=shutil.ignore_patterns("requirements.txt", ".complete"))
        shutil.copy2(wheels / "requirements.txt", ctx / "requirements.txt")
        shutil.copy2(BOOT, ctx / "laddr_boot.py")
        log(f"building {tag} (the project's requirements on the local Debian image)")
        build_image(tag, ctx, digest, {"BASE_IMAGE": TAGS.base}, log)
    log(f"  {tag}: {time.monotonic() - t0:.1f}s")
    return tag
