"""A Laddr project's files, as `laddr init` / `laddr add agent` lay them out.

    project = LaddrProject.open("~/code/myproj")
    project.agents            # (Agent(name='coordinator', module='agents.coordinator', ...), ...)
    project.env_file          # .../myproj/.env (may not exist: see has())

A folder is a Laddr project when it has `laddr.yml` (Laddr's own test) and an
`agents/` package with at least one agent module. An agent module is a file
`agents/<module>.py` (not `_`-prefixed) that calls Laddr's `Agent(...)` or
`WorkerRunner(...)`, judged from its syntax tree, or from its text when it does not
parse (such a module is still an agent: its worker is the one that will crash).
The agent's name is the literal `name=` given to `Agent(...)`, else the module's.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ProjectError

LADDR_YML = "laddr.yml"
AGENTS_DIR = "agents"
ENV_FILE = ".env"
COMPOSE_FILE = "docker-compose.yml"
REQUIREMENTS_FILE = "requirements.txt"
# Where the sandbox keeps what it needs inside a project (migrate's backups).
STATE_DIR = ".laddr-sandbox"

_AGENT_CALLS = {"Agent", "WorkerRunner"}
_AGENT_TEXT = re.compile(r"\b(?:Agent|WorkerRunner)\s*\(")
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Agent:
    name: str  # the Agent's name (what tasks are addressed to)
    module: str  # "agents.<stem>": run as `python -m agents.<stem>` from the project root
    path: Path

    @property
    def worker_service(self) -> str:
        """The Compose service `laddr add agent` writes for it."""
        return f"{self.name}_worker"


@dataclass(frozen=True)
class LaddrProject:
    root: Path
    agents: tuple[Agent, ...]

    @classmethod
    def open(cls, directory: str | Path) -> LaddrProject:
        root = Path(directory).expanduser()
        if not root.is_dir():
            raise ProjectError(f"not a Laddr project: {root} is not a folder")
        root = root.resolve()
        if not (root / LADDR_YML).is_file():
            raise ProjectError(f"not a Laddr project: {root} has no {LADDR_YML} (make one with `laddr init`)")
        agents_dir = root / AGENTS_DIR
        if not agents_dir.is_dir():
            raise ProjectError(f"not a Laddr project: {root} has no {AGENTS_DIR}/ folder")
        agents = tuple(a for a in (_agent_of(p) for p in sorted(agents_dir.glob("*.py"))) if a)
        if not agents:
            raise ProjectError(f"not a Laddr project: {agents_dir} has no agent module "
                               "(a .py file that calls laddr's Agent(...) or WorkerRunner(...))")
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ProjectError(f"{agents_dir}: more than one module defines agent {', '.join(dupes)}")
        return cls(root, agents)

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def agent(self, name: str) -> Agent:
        for a in self.agents:
            if a.name == name:
                return a
        raise ProjectError(f"{self.root}: no agent {name!r} (agents: {', '.join(self.agent_names)})")

    # The files `laddr init` lays out, by name.
    laddr_yml = property(lambda self: self.root / LADDR_YML)
    agents_dir = property(lambda self: self.root / AGENTS_DIR)
    env_file = property(lambda self: self.root / ENV_FILE)
    compose_file = property(lambda self: self.root / COMPOSE_FILE)
    requirements_file = property(lambda self: self.root / REQUIREMENTS_FILE)

    @property
    def venv(self) -> Path | None:
        """The project's own `.venv`, when it has one with a Python in it."""
        python = self.root / ".venv" / "bin" / "python"
        return python.parent.parent if python.exists() else None

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def has(self, path: Path) -> bool:
        return path.is_file()


def _agent_of(path: Path) -> Agent | None:
    if path.name.startswith("_"):
        return None
    stem = path.stem
    if not _NAME_OK.match(stem):  # not importable as agents.<stem>
        return None
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError:
        return Agent(stem, f"{AGENTS_DIR}.{stem}", path) if _AGENT_TEXT.search(source) else None
    name: str | None = None
    found = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node.func) in _AGENT_CALLS:
            found = True
            if _callee(node.func) == "Agent" and name is None:
                for kw in node.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        name = kw.value.value
    if not found:
        return None
    return Agent(name if name and _NAME_OK.match(name) else stem, f"{AGENTS_DIR}.{stem}", path)


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
