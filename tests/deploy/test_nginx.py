"""The shipped nginx site in front of two workers started as the systemd units start them.

Everything goes through nginx over TLS, with the security settings of deploy/chatsite.env:
pages, static files, streamed API replies, the chat websocket, the client address, the
body size limit, and the spread over the workers (and what happens when one dies).
"""

from __future__ import annotations

import json
import re
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from accounts.models import User
from conversations.models import Conversation, Message
from tests.conversations.conftest import MODEL, session_cookie
from tests.deploy import stack
from tests.live import Worker
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

SPOOFED = "203.0.113.9"  # an address a client claims in its own X-Forwarded-For


@dataclass
class Site:
    nginx: stack.Nginx
    workers: list[Worker]
    tls: ssl.SSLContext  # a client context that trusts nginx's certificate


@pytest.fixture(scope="module")
def site(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[Site]:
    """nginx on a free https port in front of two workers."""
    if stack.nginx_binary() is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; make test does)")
    with tempfile.TemporaryDirectory(prefix="chatsite-nginx-") as directory:
        prefix = Path(directory)
        prefix.chmod(0o755)  # nginx's workers run as nobody when the tests run as root
        tls = stack.self_signed_certificate(prefix)
        https_port = stack.free_port()
        # SECURE_PROXY_SSL=1 lets the chat socket's origin check see the https origin.
        env = stack.env_file_settings("SECURE_", "MAX_REQUEST_MB")
        with django_db_blocker.unblock(), stack.workers(2, env) as workers:
            ports = [worker.port for worker in workers]
            with stack.nginx(ports, prefix / "nginx", tls, https_port) as server:
                yield Site(server, workers, ssl.create_default_context(cafile=str(tls.cert)))


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.nginx.origin, verify=site.tls, timeout=10) as client:
        yield client


@pytest.fixture
def conversation(member: User, upstream: MockUpstream) -> Conversation:
    return Conversation.objects.create(owner=member, model=MODEL)


def test_a_page_and_its_static_files_load_over_https(
    client: httpx.Client, site: Site, conversation: Conversation, member: User
) -> None:
    client.cookies.set("sessionid", session_cookie(member))
    page = client.get(f"/c/{conversation.pk}/")
    # SECURE_SSL_REDIRECT is on: a page, not a redirect loop, means the app saw https (and
    # only then does it send HSTS).
    assert page.status_code == 200, page.text[:500]
    assert page.headers["strict-transport-security"].startswith("max-age=31536000")
    stylesheet = re.search(r'href="(/static/css/site\.[0-9a-f]+\.css)"', page.text)
    assert stylesheet, "no hashed stylesheet link in the page"
    static = client.get(stylesheet.group(1))
    assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
    assert "immutable" in static.headers["cache-control"]

    plain = httpx.get(f"http://127.0.0.1:{site.nginx.http_port}/c/1/?x=1")
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/c/1/?x=1"


STREAMS = {
    "/api/chat": lambda line: (json.loads(line).get("message") or {}).get("content"),
    "/v1/chat/completions": lambda line: (
        line.startswith("data: {")
        and (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content")
    ),
}


@pytest.mark.parametrize("path", list(STREAMS))
def test_an_api_reply_streams_through_unbuffered(
    client: httpx.Client, path: str, member_key: str, upstream: MockUpstream
) -> None:
    upstream.script(tokens=8, delay=0.1)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    arrivals = []
    headers = {"Authorization": f"Bearer {member_key}"}
    with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line and STREAMS[path](line):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 8
    # The first token was read while the mock was still writing the rest, 0.1 s apart.
    assert arrivals[0] < upstream.streams[-1].finished_at - 0.5
    assert arrivals[-1] - arrivals[0] > 0.5


def test_the_chat_websocket_streams_a_turn(
    site: Site, conversation: Conversation, member: User, upstream: MockUpstream
) -> None:
    upstream.script(tokens=8, delay=0.1)
    url = f"wss://127.0.0.1:{site.nginx.https_port}/ws/c/{conversation.pk}/"
    headers = {"Cookie": f"sessionid={session_cookie(member)}"}
    origin = site.nginx.origin
    with connect(url, ssl=site.tls, origin=origin, additional_headers=headers) as socket:
        socket.send(json.dumps({"action": "send", "content": "Hello", "model": MODEL}))
        first_token = None
        while True:
            frame = socket.recv(timeout=5)
            if first_token is None and "tok0" in frame:
                first_token = time.monotonic()
            if "status-complete" in frame:
                done = time.monotonic()
                break
    assert first_token is not None and done - first_token > 0.5
    reply = Message.objects.get(conversation=conversation, role=Message.Role.ASSISTANT)
    assert reply.content == " ".join(f"tok{i}" for i in range(8))


def test_a_body_up_to_max_request_mb_reaches_the_app(client: httpx.Client, member_key: str) -> None:
    megabytes = int(stack.env_file_settings("MAX_REQUEST_MB")["MAX_REQUEST_MB"])
    response = client.post(
        "/api/chat",
        content=b"x" * (megabytes * 1024 * 1024 + 1024),
        headers={"Authorization": f"Bearer {member_key}"},
    )
    # The app's own answer (JSON, in the API's error format), not nginx's HTML page.
    assert response.status_code == 413, response.text[:300]
    assert response.json() == {"error": f"request body too large: the limit is {megabytes} MiB"}


def test_requests_are_spread_over_both_workers_and_survive_one_dying(site: Site) -> None:
    # From 127.0.0.2: an address the workers see only if they take it from nginx's header.
    transport = httpx.HTTPTransport(verify=site.tls, local_address="127.0.0.2")
    with httpx.Client(base_url=site.nginx.origin, transport=transport, timeout=10) as client:

        def health() -> int:
            return client.get("/health", headers={"X-Forwarded-For": SPOOFED}).status_code

        assert [health() for _ in range(6)] == [200] * 6
        # Each worker logged requests from the address nginx saw, not the one claimed.
        for worker in site.workers:
            assert re.search(r'^127\.0\.0\.2:\d+ .*"GET /health"', worker.log(), re.MULTILINE)
            assert SPOOFED not in worker.log()
            # nginx keeps its connection to the worker open for the next request.
            assert open_connections_to(worker.port) >= 1
        site.workers[1].stop()
        assert [health() for _ in range(6)] == [200] * 6
    assert "no live upstreams" not in site.nginx.error_log()


def open_connections_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:`port` (from /proc/net/tcp, Linux)."""
    remote = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[2] == remote and line.split()[3] == "01")
