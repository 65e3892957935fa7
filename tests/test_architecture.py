"""The import rules of pyproject.toml's [tool.importlinter] contracts hold (docs/architecture.md):
the engine imports nothing of accounts, the meter, the doors or the console; the meter nothing
of the doors; nothing imports the console."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ["accounts", "api", "audit", "chatsite", "console", "conversations", "llm", "usage"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Check the project's contracts against the packages found in `cwd`."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    command = [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    return subprocess.run(
        [*command, "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_apps_keep_the_import_rules() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_each_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "llm" / "catalog.py").write_text("import usage\n")
    (tmp_path / "usage" / "services.py").write_text("from api import views\n")
    (tmp_path / "accounts" / "views.py").write_text("import console\n")
    (tmp_path / "audit" / "services.py").write_text("from llm import models\n")
    (tmp_path / "api" / "views.py").write_text("")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "4 broken" in result.stdout
    for found in [
        "llm.catalog -> usage",
        "usage.services -> api.views",
        "accounts.views -> console",
        "audit.services -> llm",
    ]:
        assert found in result.stdout
