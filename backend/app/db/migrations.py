"""Running Alembic from code (`reportctl db upgrade`, tests, `make run`)."""

from __future__ import annotations

import site
import sys
from pathlib import Path

from alembic.config import Config

from alembic import command

BACKEND_DIR = Path(__file__).resolve().parents[2]


def scripts_dir() -> Path:
    """The migration scripts: `backend/alembic` in a checkout (editable install, the image),
    else the copy a non-editable install puts under `<prefix>/share` (pyproject's
    data-files)."""
    checkout = BACKEND_DIR / "alembic"
    if (checkout / "env.py").is_file():  # installed, BACKEND_DIR is site-packages: no env.py
        return checkout
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix) / "share" / "report-job-service" / "alembic"
        if (installed / "env.py").is_file():
            return installed
    raise RuntimeError(f"no migration scripts: neither {checkout} nor an installed copy")


def alembic_config(database_url: str) -> Config:
    ini = BACKEND_DIR / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(scripts_dir()))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
