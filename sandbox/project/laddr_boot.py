"""Runs one agent module of a Laddr project as `python -m agents.<name>` does, in the
project's own Python (so it imports nothing of the sandbox).

    <project python> laddr_boot.py agents.researcher

The one difference: where the sandbox set `LLM_BACKEND_<AGENT>=noop` because no LLM
key is configured, Laddr's NoOp backend replaces the LLM the agent module passes
explicitly (`laddr init`'s templates pass `llm=gemini(...)`, which Laddr lets win
over `LLM_BACKEND_<AGENT>`), so the worker answers instead of failing on a missing key.
"""

import os
import runpy
import sys


def use_noop_llm() -> None:
    from laddr.core import agent_runtime
    from laddr.core.llm import NoOpLLM

    original = agent_runtime.Agent.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("llm") is not None:
            kwargs["llm"] = NoOpLLM()
        original(self, *args, **kwargs)

    agent_runtime.Agent.__init__ = init


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: laddr_boot.py agents.<name>")
    module = sys.argv[1]
    agent = os.environ.get("AGENT_NAME") or module.rpartition(".")[2]
    if os.environ.get(f"LLM_BACKEND_{agent.upper()}") == "noop":
        use_noop_llm()
    # As `python -m` does: the working folder (the project) first, not this file's folder.
    sys.path[0] = os.getcwd()
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
