"""What every benchmark needs: Django on a throwaway data directory, Redis, free ports and a
real Daphne. Run benchmarks from the repository root (`make bench`)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chatsite.embedded import daphne_endpoint, start_redis, stop  # noqa: E402
from tests.live import free_port  # noqa: E402

__all__ = ["ROOT", "free_port", "quiet_collector", "set_up_django", "start_daphne", "stop"]


@contextmanager
def quiet_collector() -> Iterator[None]:
    """No cyclic garbage collection in the load generator while it measures (as `timeit`).

    The benchmark process holds all of Django besides its own clients: a full collection
    paused it for 70 ms in the middle of a burst, and every first token it was waiting for
    looked 70 ms late (seen by tracing both ends of the API benchmark).
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def set_up_django(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Point Django at `data_dir` (SQLite) and Redis, migrate; return the Redis we started."""
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ["OLLAMA_BASE_URL"] = ""
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    redis_process = None
    if not os.environ.get("REDIS_URL"):
        redis_process, os.environ["REDIS_URL"] = start_redis(data_dir)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return redis_process


def start_daphne(
    application: str = "chatsite.asgi:application",
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path = ROOT,
) -> tuple[subprocess.Popen[bytes], int]:
    """A Daphne on a free loopback port, once it answers /health; returns it and its port.

    `cwd`: the copy of the code it runs (another checkout, to compare two versions)."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    # As the product's launcher runs it (chatsite.embedded): its listener, its server.
    command = ["-m", "chatsite.serve", "-e", daphne_endpoint("127.0.0.1", port), application]
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process, port
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("Daphne did not start within 30 s")
