"""The shipped deployment, run for real on loopback: `manage.py prepare` and Daphne workers
started with the command lines of deploy/systemd/ (the workers by `tests.live`, with the
unit's Daphne options), and nginx with deploy/nginx/chatsite.conf (only its addresses and
certificate changed) in a private prefix directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatsite.embedded import stop
from tests import live
from tests.live import BASE_DIR, free_port

DEPLOY = BASE_DIR / "deploy"
SITE_FILE = DEPLOY / "nginx" / "chatsite.conf"
UNITS = DEPLOY / "systemd"
ENV_FILE = DEPLOY / "chatsite.env"
INSTALL_VENV_BIN = Path("/srv/chatsite/.venv/bin")  # where the units expect the install


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def unit_command(unit: str, instance: str = "") -> list[str]:
    """A shipped unit's ExecStart, run from this checkout with this interpreter."""
    text = (UNITS / unit).read_text()
    found = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
    assert found, f"{unit} has no ExecStart"
    argv = shlex.split(found.group(1).replace("%i", instance))
    assert argv[0] == str(INSTALL_VENV_BIN / "python"), f"{unit} runs {argv[0]}"
    return [sys.executable, *argv[1:]]


def env_file_settings(*prefixes: str) -> dict[str, str]:
    """The variables of deploy/chatsite.env whose names start with one of `prefixes`."""
    settings = {}
    for line in ENV_FILE.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and name.startswith(prefixes):
            settings[name] = value
    return settings


def daphne_options(unit: str = "chatsite@.service") -> list[str]:
    """The Daphne options of the worker unit's command line, which must otherwise be the
    command `tests.live` starts its workers with (the same server, endpoint and app)."""
    port = 8001
    argv = unit_command(unit, str(port))
    options = argv[3:-3]  # between "-m chatsite.serve" and "-e ENDPOINT APP"
    assert argv == live.daphne_command(port, options), (
        f"{unit} runs {shlex.join(argv[1:])}; tests/deploy/stack.py expects "
        f"{shlex.join(live.daphne_command(port, options)[1:])}"
    )
    return options


# For the prepare step and the workers: unbuffered output as the units have it (access log
# lines as they happen), and no model server, so that prepare creates no default connection
# in the test database.
UNIT_ENV = {"PYTHONUNBUFFERED": "1", "OLLAMA_BASE_URL": "", "OPENAI_BASE_URL": ""}


@contextmanager
def workers(count: int, extra_env: dict[str, str]) -> Iterator[list[live.Worker]]:
    """Run chatsite-prepare.service's command, then `count` workers with the Daphne options
    of chatsite@.service, on the test database and Redis with `extra_env`."""
    env = {**UNIT_ENV, **extra_env}
    prepared = subprocess.run(
        unit_command("chatsite-prepare.service"),
        cwd=BASE_DIR,
        env=live.worker_env(env),
        capture_output=True,
    )
    assert prepared.returncode == 0, prepared.stderr.decode()[-3000:]
    with live.workers(count, env, daphne_options()) as started:
        yield started


@dataclass
class TlsFiles:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _substitute(text: str, pattern: str, replacement: str, expected: int) -> str:
    """Replace `pattern`, which must occur exactly `expected` times in the site file."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == expected, (
        f"{SITE_FILE.relative_to(BASE_DIR)}: {found} matches of {pattern!r}, expected "
        f"{expected}; update tests/deploy/stack.py with it"
    )
    return result


def site_config(upstreams: list[int], https_port: int, http_port: int, tls: TlsFiles) -> str:
    """The shipped site file with loopback addresses and a test certificate."""
    text = SITE_FILE.read_text()
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
    text = _substitute(text, r"(?:^ +server 127\.0\.0\.1:\d+;\n)+", servers, 1)
    text = _substitute(text, r"^ +listen \[::\]:\d+.*\n", "", 2)  # IPv6 may be off here
    text = _substitute(text, r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;", 1)
    text = _substitute(text, r"listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = _substitute(text, r"ssl_certificate \S+;", f"ssl_certificate {tls.cert};", 1)
    return _substitute(text, r"ssl_certificate_key \S+;", f"ssl_certificate_key {tls.key};", 1)


def main_config(prefix: Path, site: Path) -> str:
    """An nginx.conf like Debian's, with every path in `prefix`, that includes the site."""
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"pid {prefix / 'nginx.pid'};\n"
        "worker_processes 1;\n"
        f"error_log {prefix / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        "    gzip on;\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{temp_paths}"
        f"    include {site};\n"
        "}\n"
    )


def self_signed_certificate(directory: Path) -> TlsFiles:
    """A certificate for 127.0.0.1, valid for a day, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass
class Nginx:
    """nginx in front of the workers: its https and plain http ports, its log files."""

    https_port: int
    http_port: int
    prefix: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")


@contextmanager
def nginx(upstreams: list[int], prefix: Path, tls: TlsFiles, https_port: int) -> Iterator[Nginx]:
    """Run nginx in the foreground with its own prefix, pid file and logs."""
    binary = nginx_binary()
    assert binary, "nginx is not installed"
    prefix.mkdir(mode=0o755, parents=True, exist_ok=True)  # for workers running as nobody
    server = Nginx(https_port, free_port(), prefix)
    site = prefix / "chatsite.conf"
    site.write_text(site_config(upstreams, server.https_port, server.http_port, tls))
    conf = prefix / "nginx.conf"
    conf.write_text(main_config(prefix, site))
    command = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_port(server.https_port, process, server)
        yield server
    finally:
        stop(process)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], server: Nginx) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"nginx exited: {stderr}\n{server.error_log()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen within 10 s:\n{server.error_log()[-3000:]}")
