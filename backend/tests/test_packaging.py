"""The package installed as the image installs it: runtime dependencies only, no extras.

A fresh virtual environment (no system site-packages) gets `pip install backend/`
(non-editable, so the checkout cannot stand in for a missing file or dependency), then
runs `reportctl --help`, `reportctl db upgrade` and `celery_manager.py --help` with its own
Python, from a directory outside the checkout. pip reuses its wheel cache: about half a
minute here. Without a package index it skips, except with CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND_DIR = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600.0
COMMAND_TIMEOUT = 120.0

# What pip prints when it cannot reach an index (as opposed to a real packaging error).
_OFFLINE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeoutError",
)

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 4 * COMMAND_TIMEOUT)


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would let the outer venv, the
    checkout or the test suite's settings leak into the fresh one."""
    leaking = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    from app.core.config import Settings

    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in leaking and k.upper() not in settings}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with backend/ installed, no extras; its bin directory."""
    root = tmp_path_factory.mktemp("packaging")
    env = _clean_env()
    _run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root, env=env)
    bin_dir = root / "venv" / "bin"
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(BACKEND_DIR)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        output = done.stdout + done.stderr
        offline = any(marker in output for marker in _OFFLINE)
        if offline and os.environ.get("CI") != "true":
            pytest.skip(f"no package index reachable (pip: {output.strip()[-300:]})")
        pytest.fail(f"pip install {BACKEND_DIR} failed:\n{output[-4000:]}")
    return bin_dir


def test_installed_package_is_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    where = _run(
        [str(venv / "python"), "-c", "import app; print(app.__file__)"], tmp_path, _clean_env()
    )
    assert "site-packages" in where and str(BACKEND_DIR) not in where, where


def test_reportctl_runs_with_runtime_dependencies_only(venv: Path, tmp_path: Path) -> None:
    env = _clean_env(VAR_DIR=str(tmp_path / "var"))
    assert "submit" in _run([str(venv / "reportctl"), "--help"], tmp_path, env)
    _run([str(venv / "reportctl"), "submit", "--help"], tmp_path, env)
    # Migrations ship with the package: no checkout to find them in.
    _run([str(venv / "reportctl"), "db", "upgrade"], tmp_path, env)
    assert (tmp_path / "var" / "reports.db").is_file()
    db = tmp_path / "explicit.db"
    _run(
        [str(venv / "reportctl"), "db", "upgrade"],
        tmp_path,
        {**env, "DATABASE_URL": f"sqlite:///{db}"},
    )
    assert db.is_file()


def test_celery_manager_runs_with_the_installed_package(venv: Path, tmp_path: Path) -> None:
    env = _clean_env(VAR_DIR=str(tmp_path / "var"))
    # From the checkout, as the README runs it (it uses the app package beside it)...
    out = _run(
        [str(venv / "python"), str(BACKEND_DIR / "celery_manager.py"), "--help"], tmp_path, env
    )
    assert "worker" in out
    # ...and alone, against the installed package only.
    script = tmp_path / "celery_manager.py"
    shutil.copy(BACKEND_DIR / "celery_manager.py", script)
    assert "worker" in _run([str(venv / "python"), str(script), "--help"], tmp_path, env)


def test_pdf_fonts_ship_with_the_package(venv: Path, tmp_path: Path) -> None:
    """The fonts and their licences are package data, and the runtime dependencies shape
    right-to-left text: a PDF in four scripts builds from the installed package alone."""
    script = (
        "import sys\n"
        "from reportlab.pdfgen import canvas\n"
        "from app.reports import pdf_fonts\n"
        "names = sorted(p.name for p in pdf_fonts.FONT_DIR.iterdir())\n"
        "print(pdf_fonts.FONT_DIR)\n"
        "print(' '.join(names))\n"
        "c = canvas.Canvas(sys.argv[1], initialFontName=pdf_fonts.SANS)\n"
        "c.setFont(pdf_fonts.SANS, 12)\n"
        "c.drawString(50, 700, 'Łódź 東京 Москва القاهرة')\n"
        "c.save()\n"
    )
    out = tmp_path / "fonts.pdf"
    printed = _run([str(venv / "python"), "-c", script, str(out)], tmp_path, _clean_env())
    font_dir, names = printed.splitlines()[:2]
    assert "site-packages" in font_dir, font_dir
    assert set(names.split()) >= {
        "DejaVuSans.ttf",
        "DejaVuSans-Bold.ttf",
        "DroidSansFallback.ttf",
        "LICENSE-DejaVu.txt",
        "LICENSE-DroidSansFallback-Apache-2.0.txt",
        "README.md",
    }, names
    data = out.read_bytes()
    assert b"+DejaVuSans" in data and b"+DroidSansFallback" in data


def test_docs_assets_ship_with_the_package(venv: Path, tmp_path: Path) -> None:
    """/docs and /redoc are served from package data (no CDN): the installed app has them,
    with their licences."""
    names = [
        "swagger-ui/swagger-ui-bundle.js",
        "swagger-ui/swagger-ui.css",
        "swagger-ui/favicon-32x32.png",
        "swagger-ui/LICENSE",
        "redoc/redoc.standalone.js",
        "redoc/LICENSE",
    ]
    code = (
        "import pathlib, sys, app; root = pathlib.Path(app.__file__).parent / 'static'; "
        "print(*(int((root / n).stat().st_size > 0) for n in sys.argv[1:]))"
    )
    out = _run([str(venv / "python"), "-c", code, *names], tmp_path, _clean_env())
    assert out.split() == ["1"] * len(names), out
