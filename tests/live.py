"""A real Daphne serving the project on a free loopback port, for browser and API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.db import connection

from chatsite.embedded import daphne_endpoint

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the test database pytest-django created."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{auth}{settings.get('HOST') or '127.0.0.1'}{port}/{settings['NAME']}"


@dataclass
class Worker:
    """A running Daphne process of the tests: where it listens, and its log."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def daphne(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start Daphne against the test database and Redis; yield its base URL."""
    with daphne_worker(extra_env) as worker:
        yield worker.url


@contextmanager
def daphne_worker(extra_env: dict[str, str] | None = None) -> Iterator[Worker]:
    """Start Daphne against the test database and Redis; yield the running worker."""
    port = free_port()
    env = {
        **os.environ,
        # Not tests.settings: importing it makes a new DATA_DIR (another secret key and
        # static root) for the process that imports it.
        "DJANGO_SETTINGS_MODULE": "tests.live_settings",
        "DATABASE_URL": test_database_url(),
        # No sweeps for orphaned replies unless a test asks: its query every 1.5 s can
        # deadlock with PostgreSQL's TRUNCATE when a transactional test flushes the tables.
        "ORPHAN_SWEEP": "0",
        **(extra_env or {}),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = Path(os.environ["DATA_DIR"]) / f"daphne-{port}.log"
    _collect_static(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatsite.serve",  # the product's Daphne: its access log redacts secrets
                "-e",
                daphne_endpoint("127.0.0.1", port),
                "chatsite.asgi:application",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log_path)
        yield Worker(url, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


_collected: set[str] = set()


def _collect_static(env: dict[str, str]) -> None:
    """Collect static files into this run's DATA_DIR, once for all the workers it starts."""
    if env["DATA_DIR"] in _collected:
        return
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    _collected.add(env["DATA_DIR"])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Daphne exited:\n{log_path.read_text()[-3000:]}")
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Daphne did not start within 30 s:\n{log_path.read_text()[-3000:]}")
