"""The Compose CLI: `docker compose` (v2), else `docker-compose` (v1), always as argument lists.

    LADDR_COMPOSE_CLI   force a CLI: "docker compose" or "docker-compose"
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil

from sandbox.runtime.base import Progress, RuntimeFailure, no_progress
from sandbox.runtime.compose.config import ComposeConfig

# v2 repeats its status lines while it waits: a line seen this recently is not said again
REPEAT_WINDOW = 8


class ComposeCli:
    def __init__(self, config: ComposeConfig, argv: list[str] | None = None):
        self.config = config
        forced = os.environ.get("LADDR_COMPOSE_CLI")
        self.argv = argv or (shlex.split(forced) if forced else None)

    async def find(self) -> list[str]:
        """The CLI to run (found once): v2 where `docker compose version` works, else v1."""
        if self.argv:
            return self.argv
        if not shutil.which("docker") and not shutil.which("docker-compose"):
            raise RuntimeFailure("Docker is not installed: run scripts/setup-docker.sh (or install Docker and Compose)")
        if shutil.which("docker"):
            proc = await asyncio.create_subprocess_exec("docker", "compose", "version", stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            if await proc.wait() == 0:
                self.argv = ["docker", "compose"]
                return self.argv
        if shutil.which("docker-compose"):
            self.argv = ["docker-compose"]
            return self.argv
        raise RuntimeFailure("no Compose CLI: install the docker compose plugin (v2) or docker-compose; "
                             "scripts/setup-docker.sh does")

    async def run(self, files: list[str], *args: str, progress: Progress = no_progress,
                  profiles: list[str] | None = None) -> str:
        """Run one Compose command on this project and these files; its output, or a RuntimeFailure."""
        config = self.config
        cmd = [*await self.find(), "--project-directory", str(config.dir)]
        for env_file in config.env_files():  # none (a fresh clone): the files' defaults apply, `down` still works
            cmd += ["--env-file", str(env_file)]
        cmd += ["-p", config.project]
        for f in files:
            cmd += ["-f", str(config.dir / f)]
        cmd += list(args)
        env = config.compose_env()
        if profiles is not None:
            env["COMPOSE_PROFILES"] = ",".join(profiles)
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=config.dir, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        lines: list[str] = []
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line and line not in lines[-REPEAT_WINDOW:]:
                progress(line)
            if line:
                lines.append(line)
        if await proc.wait() != 0:
            raise RuntimeFailure(self.explain(lines, args[0] if args else "compose"))
        return "\n".join(lines)

    def explain(self, lines: list[str], verb: str) -> str:
        """A failed command's output as one line that says what to do."""
        low = "\n".join(lines).lower()
        if "port is already allocated" in low or "address already in use" in low:
            return ("a host port of the stack is taken by another program: stop it or change the *_HOST_PORT "
                    f"settings in {self.config.env_file}")
        if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
            return "the Docker engine is not running: start it (scripts/setup-docker.sh starts dockerd)"
        if "pull access denied" in low or "no such image" in low or "manifest unknown" in low or "failed to resolve" in low:
            return ("an image of the stack is missing and cannot be pulled: build local images with "
                    f"scripts/setup-docker.sh ({lines[-1][:160]})")
        last = next((ln for ln in reversed(lines) if not ln.lower().startswith(("warn", "time="))), "no output")
        return f"docker compose {verb} failed: {last[:300]}"
