"""LaddrProject.open on a real `laddr init` project, and on folders that are not one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.project import LaddrProject, ProjectError
from tests.project.conftest import GUIDE_AGENTS


def test_finds_the_five_agents_and_the_files(laddr_project: Path) -> None:
    project = LaddrProject.open(laddr_project)
    assert sorted(project.agent_names) == sorted(GUIDE_AGENTS)
    researcher = project.agent("researcher")
    assert researcher.module == "agents.researcher"
    assert researcher.path == laddr_project / "agents" / "researcher.py"
    assert researcher.worker_service == "researcher_worker"
    for path in (project.env_file, project.compose_file, project.requirements_file, project.laddr_yml):
        assert path.is_file(), path


def test_helper_modules_are_not_agents_and_a_broken_agent_still_is(laddr_project: Path) -> None:
    (laddr_project / "agents" / "helpers.py").write_text("def shout(s):\n    return s.upper()\n")
    (laddr_project / "agents" / "broken.py").write_text("from laddr import Agent\nbroken = Agent(name='broken'\n")
    (laddr_project / "agents" / "_private.py").write_text("from laddr import Agent\nx = Agent(name='x')\n")
    names = LaddrProject.open(laddr_project).agent_names
    assert "helpers" not in names and "_private" not in names and "x" not in names
    assert "broken" in names


def test_the_agent_name_is_the_one_given_to_agent(laddr_project: Path) -> None:
    (laddr_project / "agents" / "summary_bot.py").write_text(
        "from laddr import Agent, WorkerRunner\nbot = Agent(name='summarizer', role='r', goal='g')\n")
    agent = LaddrProject.open(laddr_project).agent("summarizer")
    assert agent.module == "agents.summary_bot"


@pytest.mark.parametrize(("prepare", "missing"), [
    (lambda d: None, "has no laddr.yml"),
    (lambda d: (d / "laddr.yml").write_text("project: {name: x}\n"), "has no agents/ folder"),
    (lambda d: ((d / "laddr.yml").write_text("project: {name: x}\n"), (d / "agents").mkdir(),
                (d / "agents" / "__init__.py").write_text("")), "has no agent module"),
])
def test_not_a_laddr_project_says_what_is_missing(tmp_path: Path, prepare, missing: str) -> None:
    prepare(tmp_path)
    with pytest.raises(ProjectError) as err:
        LaddrProject.open(tmp_path)
    message = str(err.value)
    assert missing in message and "\n" not in message


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="is not a folder"):
        LaddrProject.open(tmp_path / "nope")
