"""A user's own Laddr project (`laddr init` / `laddr add agent`): its files, the guide's migration on them.

    layout       LaddrProject.open(dir): agents, .env, docker-compose.yml, requirements.txt
    migrate      plan(project, "kafka"|"redis") -> diff; apply(plan) with backups
    envfile, composefile, requirements   the pure transformations, one file each
    kafka_services   the Kafka services and app settings (one source for migrate and override)
    override     kafka_override(project) / redis_override(project): Compose override text
    laddr_env    a venv with laddr==X from PyPI, cached
"""

from .errors import ProjectError
from .layout import Agent, LaddrProject

__all__ = ["Agent", "LaddrProject", "ProjectError"]
