"""Fetch the pinned Apache Kafka jars from Maven Central, verified and cached per user.

The jar list (Maven path, size, sha256) is in `kafka-jars.lock` beside this file,
resolved once with Maven, so no Maven is needed at run time. Only the standard
library is used.

    python -m sandbox.brokers.kafka_jars     # fetch (if needed) and print the folder
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import BrokerError

LOCK_FILE = Path(__file__).with_name("kafka-jars.lock")
DEFAULT_REPO = "https://repo1.maven.org/maven2"
MARKER = ".complete"
ATTEMPTS = 4
WORKERS = 6

# progress(done_bytes, total_bytes, jar_name), called from download threads.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Jar:
    coords: str  # group:artifact:version
    path: str  # relative to the Maven repository root
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@cache
def locked_jars() -> tuple[Jar, ...]:
    jars = []
    for line in LOCK_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            coords, path, size, sha = line.split()
            jars.append(Jar(coords, path, int(size), sha))
    return tuple(jars)


def kafka_version() -> str:
    """The Kafka release pinned in the lock file, e.g. "3.9.2"."""
    for jar in locked_jars():
        if jar.coords.startswith("org.apache.kafka:kafka_2.13:"):
            return jar.coords.rsplit(":", 1)[1]
    raise BrokerError(f"{LOCK_FILE} names no org.apache.kafka:kafka_2.13 jar: reinstall laddr-sandbox")


def cache_root() -> Path:
    """$LADDR_CACHE_DIR, else $XDG_CACHE_HOME/laddr-sandbox, else ~/.cache/laddr-sandbox."""
    if os.environ.get("LADDR_CACHE_DIR"):
        return Path(os.environ["LADDR_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "laddr-sandbox"


def jars_dir(cache_dir: Path | None = None) -> Path:
    """Where the jars of the pinned release live (they may not be there yet)."""
    return Path(cache_dir) if cache_dir else cache_root() / f"kafka-{kafka_version()}"


def _lock_digest() -> str:
    # The marker names the lock it was made for, so a new pin re-fetches.
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _cached_ok(target: Path) -> bool:
    """The fast path: a marker for this lock and every jar with its size (stat only)."""
    try:
        if (target / MARKER).read_text().strip() != _lock_digest():
            return False
        return all((target / j.name).stat().st_size == j.size for j in locked_jars())
    except OSError:
        return False


def _fetch_once(url: str, jar: Jar, target: Path, on_bytes: Callable[[int], None]) -> str:
    """Stream `url` to a temp file; install it if the sha256 matches. Returns the digest."""
    fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{jar.name}.", suffix=".part")
    got, digest = 0, ""
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
                on_bytes(len(chunk))
        digest = h.hexdigest()
        if digest == jar.sha256:
            os.replace(tmp, target / jar.name)  # atomic: readers never see half a jar
    finally:
        if digest != jar.sha256:
            os.unlink(tmp)
            on_bytes(-got)  # the progress bar goes back for a failed try
    return digest


def _download(jar: Jar, target: Path, repo: str, on_bytes: Callable[[int], None]) -> None:
    url = f"{repo.rstrip('/')}/{jar.path}"
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        try:
            digest = _fetch_once(url, jar, target, on_bytes)
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429:  # 404 and friends will not get better
                raise BrokerError(
                    f"{url} answered HTTP {e.code}: the Maven repository lacks {jar.coords}; "
                    "unset LADDR_MAVEN_REPO or point it at a full Maven Central mirror"
                ) from e
            last = e
        except OSError as e:  # refused, DNS, timeout, reset (URLError is an OSError)
            last = e
        else:
            if digest == jar.sha256:
                return
            last = BrokerError(
                f"checksum mismatch for {jar.name} from {url} (expected sha256 {jar.sha256[:12]}…, "
                f"got {digest[:12]}…): check LADDR_MAVEN_REPO or your proxy, then retry"
            )
    if isinstance(last, BrokerError):
        raise last
    raise BrokerError(
        f"cannot fetch Kafka jars from {repo} ({type(last).__name__}: {last}): "
        "check your network, or set LADDR_MAVEN_REPO to a reachable Maven Central mirror"
    )


def ensure_kafka_jars(cache_dir: Path | None = None, progress: Progress | None = None, verify: bool = False) -> Path:
    """Return the folder holding every locked jar, fetching what is missing or damaged.

    Fast when cached: one marker read and a stat per jar. `verify=True` also
    re-hashes every cached jar (catches same-size corruption). Raises BrokerError
    with a one-line remedy when the repository is unreachable or a checksum fails.
    """
    target = jars_dir(cache_dir)
    if not verify and _cached_ok(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BrokerError(
            f"cannot create the jar cache {target} ({e}): set LADDR_CACHE_DIR to a writable folder"
        ) from e
    (target / MARKER).unlink(missing_ok=True)

    jars = locked_jars()
    total = sum(j.size for j in jars)
    todo = []
    for j in jars:
        f = target / j.name
        ok = f.is_file() and f.stat().st_size == j.size and _sha256(f) == j.sha256
        if not ok:
            todo.append(j)
    done = total - sum(j.size for j in todo)
    lock = threading.Lock()

    def on_bytes(n: int, name: str) -> None:
        nonlocal done
        with lock:
            done += n
            if progress:
                progress(done, total, name)

    repo = os.environ.get("LADDR_MAVEN_REPO") or DEFAULT_REPO
    if todo:
        with ThreadPoolExecutor(min(WORKERS, len(todo))) as pool:
            futures = [pool.submit(_download, j, target, repo, lambda n, j=j: on_bytes(n, j.name)) for j in todo]
            try:
                for fut in futures:
                    fut.result()  # re-raises the first BrokerError
            except BaseException:
                pool.shutdown(cancel_futures=True)  # do not start jars nobody will use
                raise
    elif progress:
        progress(total, total, "")
    (target / MARKER).write_text(_lock_digest() + "\n")
    return target


def classpath(cache_dir: Path | None = None) -> str:
    """A java -cp value for the cached jars (the JVM expands the trailing *)."""
    return str(jars_dir(cache_dir) / "*")


def main() -> int:
    last = [0.0]
    tty = sys.stderr.isatty()  # CI logs get one line at the end, a terminal a live counter

    def show(done: int, total: int, name: str) -> None:
        now = time.monotonic()
        if tty and (now - last[0] > 0.2 or done == total):
            last[0] = now
            print(f"\rKafka {kafka_version()} jars: {done / 1e6:5.1f} / {total / 1e6:.1f} MB", end="", file=sys.stderr)

    start = time.monotonic()
    try:
        path = ensure_kafka_jars(progress=show)
    except BrokerError as e:
        print(f"{chr(10) if tty else ''}error: {e}", file=sys.stderr)
        return 1
    size = sum(j.size for j in locked_jars())
    print(
        f"{chr(13) if tty else ''}Kafka {kafka_version()}: {len(locked_jars())} jars, {size / 1e6:.1f} MB, "
        f"ready in {time.monotonic() - start:.1f}s",
        file=sys.stderr,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
