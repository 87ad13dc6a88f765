"""Laddr 0.9.6's own message bus client, for the comparison benchmarks.

Only `laddr/core/message_bus.py` is loaded (it needs just redis and aiokafka,
which the sandbox has); the rest of the package and its heavy dependencies are
not installed. The wheel is fetched once with pip from PyPI and cached in
`<cache>/bench/` (the same cache root as Kafka's jars: $LADDR_CACHE_DIR, else
$XDG_CACHE_HOME/laddr-sandbox, else ~/.cache/laddr-sandbox).
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

from sandbox.brokers.kafka_jars import cache_root

VERSION = "0.9.6"
MODULE_PATH = "laddr/core/message_bus.py"


def cache_dir() -> Path:
    return cache_root() / "bench"


def wheel_path() -> Path | None:
    found = sorted(cache_dir().glob(f"laddr-{VERSION}-*.whl"))
    return found[0] if found else None


def fetch_wheel() -> Path:
    """The cached wheel, downloaded with `pip download --no-deps` when missing."""
    found = wheel_path()
    if found is not None:
        return found
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
             "-d", tmp, f"laddr=={VERSION}"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not fetch laddr=={VERSION} from PyPI with pip "
                f"({(done.stderr or done.stdout).strip()[-300:]}); put the wheel in {cache_dir()}"
            )
        target = cache_dir() / wheels[0].name
        wheels[0].replace(target)
    return target


def load() -> ModuleType:
    """Laddr 0.9.6's message_bus module (RedisBus, KafkaBus), imported from the cached wheel."""
    name = f"laddr_{VERSION.replace('.', '_')}_message_bus"
    if name in sys.modules:
        return sys.modules[name]
    wheel = fetch_wheel()
    source = zipfile.ZipFile(wheel).read(MODULE_PATH)
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_bytes() != source:
        path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.SOURCE_SHA256 = hashlib.sha256(source).hexdigest()  # type: ignore[attr-defined]
    return module
