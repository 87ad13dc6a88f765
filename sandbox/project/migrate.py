"""The migration guide on a project's files: what would change (a plan), then apply it.

    plan = migrate.plan(LaddrProject.open(dir), "kafka")
    print(plan.diff())          # unified diff of every file it would change
    migrate.apply(plan)         # write; the originals are kept for the rollback

`apply` of a Kafka plan keeps each original it replaces in
`<project>/.laddr-sandbox/migrate/<file>.redis`, with the checksum of what it
wrote. A Redis plan restores such a backup byte for byte when the file is still
what was written; otherwise (no backup: a project on Kafka from the start, or the
file edited since) it applies the guide's rollback as a transformation, and says
which it did. The transformations themselves are pure (text in, text out):
envfile, composefile and requirements.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import composefile, envfile, requirements
from .errors import ProjectError
from .layout import LaddrProject

TARGETS = ("kafka", "redis")
BACKUP_SUFFIX = ".redis"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileChange:
    path: Path
    before: str
    after: str
    how: str  # "transform" | "backup" | "unchanged"
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        lines = difflib.unified_diff(self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
                                     fromfile=f"a/{self.name}", tofile=f"b/{self.name}")
        out = []
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(out)


@dataclass(frozen=True)
class Plan:
    project: LaddrProject
    target: str
    changes: tuple[FileChange, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if c.changed)

    def diff(self) -> str:
        return "".join(c.diff() for c in self.changed)


def backup_dir(project: LaddrProject) -> Path:
    return project.state_dir / "migrate"


def backup_path(project: LaddrProject, path: Path) -> Path:
    return backup_dir(project) / f"{path.name}{BACKUP_SUFFIX}"


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read it ({exc.strerror})") from None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _manifest(project: LaddrProject) -> dict[str, dict[str, str]]:
    path = backup_dir(project) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _files(project: LaddrProject) -> list[Path]:
    return [project.env_file, project.compose_file, project.requirements_file]


def _transform(project: LaddrProject, path: Path, text: str, target: str) -> tuple[str, list[str]]:
    if path == project.env_file:
        return (envfile.to_kafka(text, path.name) if target == "kafka" else envfile.to_redis(text, path.name)), []
    if path == project.compose_file:
        if target == "kafka":
            return composefile.to_kafka(text, list(project.agent_names), path.name)
        return composefile.to_redis(text, path.name)
    return (requirements.to_kafka(text) if target == "kafka" else requirements.to_redis(text)), []


def plan(project: LaddrProject, target: str) -> Plan:
    if target not in TARGETS:
        raise ProjectError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    manifest = _manifest(project)
    changes: list[FileChange] = []
    notes: list[str] = []
    for path in _files(project):
        if not path.is_file():
            notes.append(f"no {path.name}: nothing to change there")
            continue
        before = read_text(path)
        backup = backup_path(project, path)
        if target == "redis" and backup.is_file():
            if manifest.get(path.name, {}).get("written") == _sha(before):
                changes.append(FileChange(path, before, read_text(backup), "backup",
                                          (f"restored from {backup.relative_to(project.root)}",)))
                continue
            after, file_notes = _transform(project, path, before, target)
            changes.append(FileChange(path, before, after, "transform", (
                f"changed since `migrate kafka --write`: the guide's rollback applied to it "
                f"(the original stays in {backup.relative_to(project.root)})", *file_notes)))
            continue
        after, file_notes = _transform(project, path, before, target)
        how = "transform" if after != before else "unchanged"
        if target == "redis" and how == "transform":
            file_notes = ["no backup from `migrate kafka --write`: the guide's rollback applied by transformation",
                          *file_notes]
        changes.append(FileChange(path, before, after, how, tuple(file_notes)))
    return Plan(project, target, tuple(changes), tuple(notes))


def apply(plan: Plan) -> list[FileChange]:
    """Write the plan's changed files (backups first, for a Kafka plan); returns what was written."""
    project = plan.project
    written = [c for c in plan.changes if c.changed]
    if not written:
        return []
    manifest = _manifest(project)
    if plan.target == "kafka":
        backup_dir(project).mkdir(parents=True, exist_ok=True)
        for c in written:
            _write(backup_path(project, c.path), c.before)
            manifest[c.name] = {"written": _sha(c.after), "original": _sha(c.before)}
        _write(backup_dir(project) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for c in written:
        _write(c.path, c.after)
    if plan.target == "redis":
        for c in written:
            if c.how == "backup":
                backup_path(project, c.path).unlink(missing_ok=True)
                manifest.pop(c.name, None)
        if manifest:
            _write(backup_dir(project) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        else:
            (backup_dir(project) / MANIFEST).unlink(missing_ok=True)
            for d in (backup_dir(project), project.state_dir):
                try:
                    d.rmdir()
                except OSError:
                    break
    return written


def _write(path: Path, text: str) -> None:
    """Atomically, keeping the file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
