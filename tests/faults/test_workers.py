"""Two real Daphne workers on one database and one Redis: what one worker does, the other
sees; a worker that dies mid-reply is recovered by the other; Redis restarts lose nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from accounts.models import ApiKey, User
from conversations.models import Conversation, Message
from llm.models import Connection
from tests.conversations.conftest import MODEL
from tests.faults.harness import ChatSocket, redis_server, session_for, stream_api, wait_until
from tests.live import Worker, workers
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

INTERRUPTED = "stopped while this reply was being written"


@pytest.fixture(scope="module")
def pair(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[list]:
    """Two workers; a member may run two generations at once."""
    with django_db_blocker.unblock(), workers(2, {"QUOTA_MEMBER_CONCURRENT": "2"}) as both:
        yield both


@pytest.fixture
def session(member: User) -> str:
    return session_for(member)


@pytest.fixture
def pages() -> Iterator[list[ChatSocket]]:
    opened: list[ChatSocket] = []
    yield opened
    for page in opened:
        page.close()


def open_page(
    pages: list[ChatSocket], worker: Worker, conversation: Conversation, session: str
) -> ChatSocket:
    page = ChatSocket(worker, conversation.pk, session)
    pages.append(page)
    return page


def last_reply(conversation: Conversation) -> Message:
    return conversation.messages.filter(role=Message.Role.ASSISTANT).last()


def test_a_turn_sent_through_one_worker_streams_to_a_page_on_the_other_and_stops_from_it(
    pair, pages, conversation: Conversation, session: str, mock: MockUpstream
) -> None:
    a, b = pair
    mock.script(tokens=500, delay=0.02)
    sender = open_page(pages, a, conversation, session)
    watcher = open_page(pages, b, conversation, session)
    sender.send(action="send", content="Count for me", model=MODEL)
    watcher.wait_for("Count for me")
    watcher.wait_for(r"tok20\b")
    watcher.send(action="stop")
    record = mock.wait_for_disconnect(within=2)  # A cancelled its upstream request
    assert not record.completed
    wait_until(lambda: last_reply(conversation).status == Message.Status.STOPPED, within=3)
    words = last_reply(conversation).content.split()
    assert 20 < len(words) < 500
    sender.wait_for("Stopped|stopped")
    # Charged before the test ends: no worker writes while the tables are flushed.
    wait_until(lambda: Generation.objects.filter(status="stopped").exists(), within=5)


def revoke_through_the_keys_page(worker: Worker, user: User, key: ApiKey) -> None:
    with httpx.Client(base_url=worker.url, timeout=10) as browser:
        browser.cookies.set("sessionid", session_for(user))
        page = browser.get(f"/keys/{key.pk}/revoke/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = browser.post(
            f"/keys/{key.pk}/revoke/",
            data={"csrfmiddlewaretoken": token},
            headers={"Origin": worker.url},
        )
        assert answer.status_code in (200, 302), answer.text[:500]


def test_a_key_revoked_on_one_worker_is_refused_by_the_other_at_once(
    pair, member: User, connection: Connection
) -> None:
    a, b = pair
    key, secret = ApiKey.issue(member, "ci")
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{b.url}/api/tags", headers=auth).status_code == 200  # cached on B
    revoke_through_the_keys_page(a, member, key)
    assert httpx.get(f"{b.url}/api/tags", headers=auth).status_code == 401


def test_concurrent_generations_are_limited_across_both_workers(
    pair, member: User, connection: Connection, mock: MockUpstream
) -> None:
    a, b = pair
    mock.script(tokens=200, delay=0.02)
    secret = ApiKey.issue(member, "ci")[1]
    with ExitStack() as stack:
        streams = [stack.enter_context(stream_api(w, secret, MODEL)) for w in (a, b, a, b)]
        assert [s.status_code for s in streams] == [200, 200, 429, 429]
    # The two admitted streams are charged as the workers see them close; wait for it, so
    # that no worker writes while the tables are flushed.
    wait_until(lambda: Generation.objects.count() == 2, within=10)


def test_a_worker_killed_mid_reply_is_recovered_by_the_other(
    django_db_blocker: pytest.FixtureRequest,
    pages,
    member: User,
    conversation: Conversation,
    session: str,
    mock: MockUpstream,
) -> None:
    mock.script(tokens=3000, delay=0.02)
    secret = ApiKey.issue(member, "ci")[1]
    with workers(2, {"QUOTA_MEMBER_CONCURRENT": "1", "ORPHAN_SWEEP": "1"}) as (a, b):
        sender = open_page(pages, a, conversation, session)
        watcher = open_page(pages, b, conversation, session)
        sender.send(action="send", content="Write at length", model=MODEL)
        watcher.wait_for(r"tok30\b")
        a.process.kill()
        killed = time.monotonic()
        frame = watcher.wait_for(INTERRUPTED, within=15)
        assert time.monotonic() - killed < 10
        assert "tok30" in frame
        reply = last_reply(conversation)
        assert reply.status == Message.Status.INTERRUPTED
        generation = Generation.objects.get(user=member)
        assert (generation.status, generation.usage_source) == ("interrupted", "estimated")

        # The dead reply's concurrency slot lapses within seconds, not an hour.
        def admitted() -> bool:
            with stream_api(b, secret, MODEL) as response:
                return response.status_code == 200

        mock.script(tokens=2, delay=0)
        assert wait_until(admitted, within=15, every=0.5) + (time.monotonic() - killed) < 20


def test_a_redis_restart_mid_reply_keeps_the_reply_and_the_spent_budget(
    pages,
    member: User,
    conversation: Conversation,
    session: str,
    mock: MockUpstream,
) -> None:
    mock.script(tokens=150, delay=0.02)
    secret = ApiKey.issue(member, "ci")[1]
    with (
        redis_server() as redis,
        workers(2, {"REDIS_URL": redis.url, "QUOTA_MEMBER_TOKENS_PER_DAY": "100"}) as (a, b),
    ):
        sender = open_page(pages, a, conversation, session)
        sender.send(action="send", content="Count to 150", model=MODEL)
        sender.wait_for(r"tok10\b")
        redis.stop()
        redis.start()
        wait_until(lambda: last_reply(conversation).status != Message.Status.STREAMING)
        reply = last_reply(conversation)
        assert reply.status == Message.Status.COMPLETE
        assert reply.content.split()[-1] == "tok149"
        later = open_page(pages, b, conversation, session)
        later.wait_for(r"tok149")
        # The reply spent the day's budget; restarting Redis again must not give it back.
        redis.stop()
        redis.start()
        with stream_api(b, secret, MODEL) as response:
            assert response.status_code == 429, b.log()[-3000:]
            response.read()
            assert "quota" in response.text
