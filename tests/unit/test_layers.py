"""The layering written in pyproject.toml ([tool.importlinter]) holds for the package, and it
really catches what it forbids: an upward import (a TYPE_CHECKING one too), an import between the
independent runtime and second pass, I/O in the sans-I/O core, the SDK reaching into the server,
and an import cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(server_dir: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the project's contracts, on the `streamscribe` package in server_dir."""
    env = {**os.environ, "PYTHONPATH": str(server_dir)}
    command = [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers_and_has_no_import_cycles() -> None:
    result = lint_imports(ROOT / "server")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        (
            "wire.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import create_app\n",
            "streamscribe.wire -> streamscribe.app",
        ),
        (
            "stream/session.py",
            "from ..live import driver\n",
            "streamscribe.stream.session -> streamscribe.live.driver",
        ),
        (
            "stream/ring.py",
            "from . import session\n",
            "No import cycles among the modules of any package BROKEN",
        ),
        ("stream/agreement.py", "import asyncio\n", "streamscribe.stream.agreement -> asyncio"),
        (
            "client/stream.py",
            "from ..live import scheduler\n",
            "streamscribe.client.stream -> streamscribe.live.scheduler",
        ),
        (
            "live/driver.py",
            "from ..finalize import service\n",
            "streamscribe.live.driver -> streamscribe.finalize.service",
        ),
    ],
    ids=[
        "upward-type-checking-import",
        "core-imports-runtime",
        "cycle-within-a-layer",
        "io-in-the-core",
        "sdk-imports-the-server",
        "runtime-imports-the-second-pass",
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, added: str, broken: str) -> None:
    copy = tmp_path / "streamscribe"
    shutil.copytree(ROOT / "server" / "streamscribe", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + "\n" + added)
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
