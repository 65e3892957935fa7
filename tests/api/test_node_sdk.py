"""The official openai Node SDK against a live server: streamed and whole chat, models, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.mock_upstream import MockUpstream

NODE_DIR = Path(__file__).resolve().parent.parent / "node"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").exists(),
        reason="needs node and `npm install --prefix tests/node` (make test does it)",
    ),
]


def test_the_openai_node_sdk_works_unmodified(
    daphne_url: str, member_key: str, upstream: MockUpstream
) -> None:
    upstream.script(text="Hi there, friend.")
    result = subprocess.run(
        ["node", "openai_check.mjs", daphne_url, member_key, "llama3.2:latest"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["whole"]["content"] == "Hi there, friend."
    assert seen["streamed"]["content"] == "Hi there, friend."
    usage = seen["streamed"]["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"]
    assert seen["embeddings"] == [
        pytest.approx([0.1, 0.5, -0.25]),
        pytest.approx([2.0, 0.5, -0.25]),
    ]
    assert "llama3.2:latest" in seen["models"] and "gpt-4o-mini" in seen["models"]
    assert seen["missing"]["status"] == 404
    assert seen["missing"]["code"] == "model_not_found"
    assert seen["missing"]["requestId"]
