"""How one of a Laddr project's agents runs as a worker under the sandbox: its own module
(`python -m agents.<name>`, Laddr's WorkerRunner) in the project's Python, with the
project's `.env` for everything but the broker, which is the sandbox's."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from .layout import Agent, LaddrProject

BOOT = Path(__file__).with_name("laddr_boot.py")
# The sandbox's broker wins over what the project's .env says (compose-internal hosts).
BROKER_KEYS = ("QUEUE_BACKEND", "REDIS_URL", "KAFKA_BOOTSTRAP")
# Laddr 0.9.6's LLM backends and the key each needs.
LLM_KEYS = {
    "openai": ("OPENAI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "grok": ("XAI_API_KEY", "GROK_API_KEY"),
    "ollama": ("OLLAMA_BASE_URL",),
}
_LLM_CALL = re.compile(r"\bllm\s*=\s*(?:llms\.)?(openai|gemini|anthropic|groq|grok|ollama)\s*\(")


@dataclass(frozen=True)
class WorkerLaunch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    llm_note: str | None  # set when the sandbox chose Laddr's NoOp LLM, saying why


def project_env(env_file: Path) -> dict[str, str]:
    if not env_file.exists():
        return {}
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def llm_backend(agent: str, module: Path, env: dict[str, str]) -> str | None:
    """The LLM backend the agent uses: LLM_BACKEND_<AGENT>, else the one its module passes."""
    chosen = env.get(f"LLM_BACKEND_{agent.upper()}") or env.get(f"{agent}_backend")
    if chosen:
        return chosen.strip().lower()
    try:
        found = _LLM_CALL.search(module.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def noop_reason(agent: str, module: Path, env: dict[str, str]) -> str | None:
    """Why this agent must run on the NoOp LLM (no key for its backend), or None."""
    backend = llm_backend(agent, module, env)
    if backend in (None, "noop"):
        return None if backend == "noop" else "no LLM backend configured"
    keys = LLM_KEYS.get(backend, ())
    if any(env.get(k) for k in keys):
        return None
    return f"{backend} needs {' or '.join(keys) or 'a key'}, which is not set"


def worker_launch(
    project: LaddrProject, agent: Agent, python: Path, broker: dict[str, str], extra: dict[str, str] | None = None
) -> WorkerLaunch:
    """The command, environment and folder of one replica of `<agent>_worker`."""
    root = project.root
    values = project_env(project.env_file)
    env_for_keys = {**values, **{k: v for k, v in os.environ.items() if k in _key_names()}}
    reason = noop_reason(agent.name, agent.path, env_for_keys)
    env = {k: v for k, v in values.items() if k not in BROKER_KEYS}
    env.update(broker)
    env.update(extra or {})
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    env["AGENT_NAME"] = agent.name  # as the project's docker-compose.yml sets it
    if reason:
        env[f"LLM_BACKEND_{agent.name.upper()}"] = "noop"
    return WorkerLaunch(
        argv=[str(python), str(BOOT), agent.module],
        env=env,
        cwd=root,
        llm_note=f"NoOp LLM ({reason})" if reason else None,
    )


def _key_names() -> set[str]:
    return {k for keys in LLM_KEYS.values() for k in keys}
