"""Real Daphne workers serving the project on free loopback ports, for the browser, API,
fault and deployment tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
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

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate it (SIGKILL if it lingers); nothing is done for one already gone."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def daphne(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start Daphne against the test database and Redis; yield its base URL."""
    with daphne_worker(extra_env) as worker:
        yield worker.url


def worker_env(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process serving the tests: this one's, with the test database
    and the suite's settings, and `extra_env` over it."""
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
    return env


def daphne_command(port: int, args: Sequence[str] = ()) -> list[str]:
    """The command line of a test Daphne on `port`: the product's Daphne (its access log
    redacts secrets) listening as `make run` does, with Daphne options `args`."""
    endpoint = daphne_endpoint("127.0.0.1", port)
    return [
        sys.executable,
        "-m",
        "chatsite.serve",
        *args,
        "-e",
        endpoint,
        "chatsite.asgi:application",
    ]


@contextmanager
def daphne_worker(
    extra_env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[Worker]:
    """Start Daphne against the test database and Redis, with `extra_env` in its
    environment and Daphne options `args` (e.g. "--proxy-headers"); yield the running
    worker, stopped at the end."""
    port = free_port()
    env = worker_env(extra_env)
    log_path = Path(os.environ["DATA_DIR"]) / f"daphne-{port}.log"
    _collect_static(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            daphne_command(port, args),
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_up(worker.url, process, log_path)
        yield worker
    finally:
        worker.stop()


@contextmanager
def workers(
    count: int, extra_env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[list[Worker]]:
    """`count` Daphne workers (see `daphne_worker`) on the same database and Redis."""
    with ExitStack() as stack:
        yield [stack.enter_context(daphne_worker(extra_env, args)) for _ in range(count)]


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
