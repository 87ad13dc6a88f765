"""The local runtime: the stack as local processes under supervisord (see runtime.py)."""

from sandbox.runtime.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
