"""Two real Daphne workers on one database and one Redis: a live link revoked through one
worker answers 404 on the other at once, and its viewer there is cut off and told so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.models import User
from conversations import shares
from conversations.models import Conversation, Message, Share
from tests.conversations.conftest import MODEL
from tests.faults.harness import ChatSocket, session_for, wait_until
from tests.live import Worker, workers
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

GONE = 4404


@pytest.fixture(scope="module")
def pair(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[list]:
    with django_db_blocker.unblock(), workers(2) as both:
        yield both


class LiveViewer:
    """A shared page's read-only socket on a worker, with no account (an "anyone" link)."""

    def __init__(self, worker: Worker, token: str) -> None:
        ws_url = worker.url.replace("http://", "ws://")
        self.exits = ExitStack()
        self.socket = self.exits.enter_context(
            connect(f"{ws_url}/ws/s/{token}/", origin=worker.url, open_timeout=5)
        )
        self.frames: list[str] = []

    def close(self) -> None:
        try:
            self.exits.close()
        except ConnectionClosed:
            pass

    def wait_for(self, pattern: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.frames.append(str(self.socket.recv(timeout=left)))
            if re.search(pattern, self.frames[-1]):
                return
        raise AssertionError(f"no frame matching {pattern!r} within {within} s")

    def close_code(self, within: float = 5) -> int:
        deadline = time.monotonic() + within
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.frames.append(str(self.socket.recv(timeout=left)))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "dropped without a close frame"
            return closed.rcvd.code
        raise AssertionError(f"the socket was not closed within {within} s")


def revoke_through_the_shared_links_page(worker: Worker, user: User, share: Share) -> None:
    with httpx.Client(base_url=worker.url, timeout=10) as browser:
        browser.cookies.set("sessionid", session_for(user))
        page = browser.get(f"/shares/{share.pk}/revoke")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = browser.post(
            f"/shares/{share.pk}/revoke",
            data={"csrfmiddlewaretoken": token},
            headers={"Origin": worker.url},
        )
        assert answer.status_code == 302, answer.text[:500]


def test_a_live_link_revoked_on_one_worker_is_gone_on_the_other_at_once(
    pair, member: User, conversation: Conversation, mock: MockUpstream
) -> None:
    a, b = pair
    share, token = shares.create(
        None,
        conversation,
        visibility=Share.Visibility.ANYONE,
        mode=Share.Mode.LIVE,
        expires_at=None,
        include_system_prompt=False,
    )
    mock.script(tokens=3000, delay=0.02)
    owner = ChatSocket(a, conversation.pk, session_for(member))
    viewer = LiveViewer(b, token)
    try:
        assert httpx.get(f"{b.url}/s/{token}/").status_code == 200
        owner.send(action="send", content="Count slowly", model=MODEL)
        viewer.wait_for(r"tok20\b")  # streamed by A, watched on B

        revoke_through_the_shared_links_page(a, member, share)
        revoked = time.monotonic()
        assert viewer.close_code() == GONE
        assert time.monotonic() - revoked < 1
        assert "This link is no longer available" in viewer.frames[-1]
        assert httpx.get(f"{b.url}/s/{token}/").status_code == 404
        assert httpx.get(f"{a.url}/s/{token}/").status_code == 404

        owner.send(action="stop")  # the owner's reply went on meanwhile
        owner.wait_for("status-stopped")
    finally:
        owner.close()
        viewer.close()
    # Charged before the test ends: no worker writes while the tables are flushed.
    wait_until(lambda: Generation.objects.filter(status="stopped").exists(), within=5)
    assert Message.objects.filter(status=Message.Status.STOPPED).count() == 1
    assert Share.objects.get().revoked_at is not None
