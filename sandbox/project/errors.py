"""The one error of this package: a project (or its files) the sandbox cannot use."""

from __future__ import annotations


class ProjectError(ValueError):
    """A folder that is not a Laddr project, or a project file that cannot be read.

    The message is one line that names the file and what is wrong or missing.
    """
