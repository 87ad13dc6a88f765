"""The compose runtime: the stack of compose/*.yml on a Docker engine (see runtime.py)."""

from sandbox.runtime.compose.runtime import ComposeRuntime

__all__ = ["ComposeRuntime"]
