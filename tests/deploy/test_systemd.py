"""The shipped systemd units, checked by systemd's own parser (`systemd-analyze verify`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.stack import INSTALL_VENV_BIN, UNITS
from tests.live import BASE_DIR


def test_the_units_verify_clean(tmp_path: Path) -> None:
    """No warning at all: systemd ignores a line it cannot parse and only says so here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify also checks that each command exists: point them at this checkout's venv.
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(str(INSTALL_VENV_BIN.parent), sys.prefix)
        (tmp_path / unit.name).write_text(text.replace("/srv/chatsite", str(BASE_DIR)))
    names = ["chatsite-prepare.service", "chatsite@8001.service", "chatsite.target"]
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in names)],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
