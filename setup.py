"""Only a build step: the sandbox's compose/ folder goes into the wheel as sandbox/compose_files/,
so an installed sandbox (`pipx install laddr-sandbox`) runs `--runtime compose` from any folder.
compose/ stays the one place to read and edit them; everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# What the compose runtime and the image builds read; never a .env, the wheelhouse or caches.
SKIP = shutil.ignore_patterns(".env", ".wheelhouse", "__pycache__", "*.pyc")


class BuildPyWithCompose(build_py):
    def run(self) -> None:
        super().run()
        source = HERE / "compose"
        if not source.is_dir():  # building from an sdist made without it
            return
        target = Path(self.build_lib) / "sandbox" / "compose_files"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithCompose})
