"""An open chat socket lives only as long as the session it was opened with.

Signing out, a password change and deactivation close it at once (pushed through the
account's group), and any frame of a session that no longer stands is refused, all with
4403. In process for each path, and once on a real Daphne for the push across processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import User
from conversations.models import Conversation
from conversations.socket_sessions import SocketSession, authorize
from tests import live
from tests.conftest import PASSWORD, make_user
from tests.conversations.conftest import MODEL, session_cookie
from tests.faults.harness import chat_socket, session_for, tracebacks
from tests.mock_upstream import MockUpstream

CLOSED = {"type": "websocket.close", "code": 4403}
DATABASE_SESSIONS = "django.contrib.sessions.backends.db"
CACHED_DB_SESSIONS = "django.contrib.sessions.backends.cached_db"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
class TestInProcess:
    async def open(self, sockets, conversation: Conversation, cookie: str):  # type: ignore[no-untyped-def]
        socket = await sockets(conversation.pk, user_cookie=cookie)
        assert (await socket.connect())[0]
        return socket

    @pytest.mark.parametrize(
        "frame",
        [
            {"action": "send", "content": "hi", "model": MODEL},
            {"action": "stop"},
            {"something": "else"},
        ],
        ids=["send", "stop", "unknown"],
    )
    async def test_a_frame_of_a_session_that_was_deleted_is_refused(
        self, sockets, conversation: Conversation, member: User, frame: dict
    ) -> None:
        cookie = await database_sync_to_async(session_cookie)(member)
        socket = await self.open(sockets, conversation, cookie)
        # Gone without a sign-out signal (expired and cleared, or deleted by an admin).
        await Session.objects.filter(session_key=cookie).adelete()
        await socket.send(**frame)
        assert await socket.communicator.receive_output(timeout=2) == CLOSED
        assert not await conversation.messages.aexists()

    async def test_a_frame_after_a_password_change_without_a_signal_is_refused(
        self, sockets, conversation: Conversation, member: User
    ) -> None:
        cookie = await database_sync_to_async(session_cookie)(member)
        socket = await self.open(sockets, conversation, cookie)
        # A queryset update sends no signal: the frame's own check catches it.
        await User.objects.filter(pk=member.pk).aupdate(password=make_password("new secret"))
        await socket.send(action="send", content="hi", model=MODEL)
        assert await socket.communicator.receive_output(timeout=2) == CLOSED
        assert not await conversation.messages.aexists()

    async def test_signing_out_closes_that_sessions_idle_socket_and_not_the_others(
        self, sockets, conversation: Conversation, member: User, mock: MockUpstream
    ) -> None:
        mock.script(tokens=2)
        leaving = await database_sync_to_async(signed_in)(member)
        staying = await database_sync_to_async(session_cookie)(member)
        socket = await self.open(sockets, conversation, leaving.cookies["sessionid"].value)
        other = await self.open(sockets, conversation, staying)
        response = await database_sync_to_async(leaving.post)("/accounts/logout/")
        assert response.status_code == 302
        # No frame from the page: the sign-out itself closes the socket.
        assert await socket.communicator.receive_output(timeout=2) == CLOSED
        assert await other.communicator.receive_nothing(timeout=0.3)
        await other.send(action="send", content="Still signed in", model=MODEL)
        await other.receive_until(r"status-complete")

    async def test_changing_the_password_closes_every_socket_of_the_account(
        self, sockets, conversation: Conversation, member: User
    ) -> None:
        changing = await database_sync_to_async(signed_in)(member)
        elsewhere = await database_sync_to_async(session_cookie)(member)
        socket = await self.open(sockets, conversation, changing.cookies["sessionid"].value)
        other = await self.open(sockets, conversation, elsewhere)
        response = await database_sync_to_async(changing.post)(
            "/accounts/password/",
            {
                "old_password": PASSWORD,
                "new_password1": "a whole new secret 42",
                "new_password2": "a whole new secret 42",
            },
        )
        assert response.status_code == 302
        assert await socket.communicator.receive_output(timeout=2) == CLOSED
        assert await other.communicator.receive_output(timeout=2) == CLOSED

    async def test_deactivating_the_account_closes_its_sockets(
        self, sockets, conversation: Conversation, member: User
    ) -> None:
        admin = await database_sync_to_async(make_user)("ada", role=User.Role.ADMIN)
        staff = await database_sync_to_async(signed_in)(admin)
        socket = await self.open(sockets, conversation, await self.cookie(member))
        response = await database_sync_to_async(staff.post)(f"/staff/users/{member.pk}/deactivate/")
        assert response.status_code == 302
        assert await socket.communicator.receive_output(timeout=2) == CLOSED

    async def test_deleting_the_account_closes_its_sockets(
        self, sockets, conversation: Conversation, member: User
    ) -> None:
        socket = await self.open(sockets, conversation, await self.cookie(member))
        await database_sync_to_async(member.delete)()
        assert await socket.communicator.receive_output(timeout=2) == CLOSED

    async def test_saving_an_account_without_an_access_change_leaves_its_sockets_open(
        self, sockets, conversation: Conversation, member: User, mock: MockUpstream
    ) -> None:
        mock.script(tokens=2)
        socket = await self.open(sockets, conversation, await self.cookie(member))
        member.first_name = "Mia"
        await database_sync_to_async(member.save)()
        assert await socket.communicator.receive_nothing(timeout=0.3)
        await socket.send(action="send", content="hi", model=MODEL)
        await socket.receive_until(r"status-complete")

    @staticmethod
    async def cookie(user: User) -> str:
        return await database_sync_to_async(session_cookie)(user)


@pytest.fixture(scope="module")
def worker(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[object]:
    """A Daphne on the suite's Redis: the test process's sign-out reaches it through Redis."""
    with django_db_blocker.unblock(), live.daphne_worker() as running:
        yield running


@pytest.mark.django_db(transaction=True)
def test_on_a_real_server_signing_out_closes_the_socket_with_4403(
    worker: live.Worker, conversation: Conversation, member: User
) -> None:
    client = signed_in(member)
    with chat_socket(worker, conversation.pk, client.cookies["sessionid"].value) as page:
        assert client.post("/accounts/logout/").status_code == 302
        assert page.close_code(within=3) == 4403
    with chat_socket(worker, conversation.pk, session_for(member)) as page:
        page.send(action="stop")  # a new session still may: no close follows
        with pytest.raises(TimeoutError):
            page.socket.recv(timeout=0.5)
    assert tracebacks(worker) == []


# -- authorize(), called for every frame: who may and who may not ------------------------


def socket_session(client: Client, user: User) -> SocketSession:
    return SocketSession(user.pk, client.session.session_key, user.get_session_auth_hash())


@pytest.mark.django_db
class TestAuthorize:
    """The verdicts with Django's database sessions and with its cached ones (where a
    session can outlive its row in the cache: each test clears it, as expiry would)."""

    @pytest.fixture(autouse=True, params=[DATABASE_SESSIONS, CACHED_DB_SESSIONS])
    def engine(self, request: pytest.FixtureRequest, settings) -> None:  # type: ignore[no-untyped-def]
        settings.SESSION_ENGINE = request.param

    def test_a_standing_session_of_the_owner_may(
        self, conversation: Conversation, member: User
    ) -> None:
        assert authorize(socket_session(signed_in(member), member), conversation.pk) == conversation

    def test_an_expired_session_may_not(self, conversation: Conversation, member: User) -> None:
        session = socket_session(signed_in(member), member)
        Session.objects.filter(session_key=session.session_key).update(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
        cache.clear()  # the cached_db engine's copy would outlive the row's expiry
        assert authorize(session, conversation.pk) is None

    def test_a_deleted_session_may_not(self, conversation: Conversation, member: User) -> None:
        client = signed_in(member)
        session = socket_session(client, member)
        client.session.delete()
        assert authorize(session, conversation.pk) is None

    def test_a_session_of_someone_else_may_not(
        self, conversation: Conversation, member: User
    ) -> None:
        other = make_user("other-person")
        theirs = signed_in(other).session.session_key
        session = SocketSession(member.pk, theirs, member.get_session_auth_hash())
        assert authorize(session, conversation.pk) is None

    def test_an_old_password_may_not(self, conversation: Conversation, member: User) -> None:
        session = socket_session(signed_in(member), member)
        User.objects.filter(pk=member.pk).update(password=make_password("another one"))
        assert authorize(session, conversation.pk) is None

    def test_a_conversation_of_someone_else_may_not(
        self, conversation: Conversation, member: User
    ) -> None:
        other = make_user("other-person")
        assert authorize(socket_session(signed_in(other), other), conversation.pk) is None

    def test_a_session_whose_data_is_corrupt_may_not(
        self, conversation: Conversation, member: User
    ) -> None:
        session = socket_session(signed_in(member), member)
        Session.objects.filter(session_key=session.session_key).update(session_data="junk")
        cache.clear()
        assert authorize(session, conversation.pk) is None
