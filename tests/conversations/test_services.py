"""Start-up sweep, titles and the ownership helper."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from conversations import recovery, services, snapshots
from conversations.models import Conversation, Message
from tests.conftest import make_user
from usage.models import Generation

pytestmark = pytest.mark.django_db


def streaming_reply(owner: User, content: str = "partial") -> Message:
    """A reply left streaming a minute ago (older than any first heartbeat)."""
    conversation = Conversation.objects.create(owner=owner, model="m")
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content=content,
        created_at=timezone.now() - timedelta(minutes=1),
    )


def test_orphaned_replies_are_marked_interrupted_with_their_last_checkpoint(member: User) -> None:
    reply = streaming_reply(member, "half an ans")
    report = recovery.mark_orphaned_replies()
    reply.refresh_from_db()
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content == "half an ans"
    assert "<p>half an ans</p>" in reply.html
    assert "1 orphaned" in report
    # What it cost is charged, estimated, to the conversation's owner.
    generation = Generation.objects.get()
    assert (generation.user, generation.status, generation.usage_source) == (
        member,
        "interrupted",
        "estimated",
    )
    assert generation.completion_tokens > 0


def test_a_reply_whose_runner_is_alive_on_another_worker_is_left_alone(member: User) -> None:
    reply = streaming_reply(member)
    async_to_sync(snapshots.start)(reply.pk)
    assert recovery.mark_orphaned_replies() == ""
    reply.refresh_from_db()
    assert reply.status == Message.Status.STREAMING


def test_the_snapshot_is_used_when_it_is_newer_than_the_checkpoint(member: User) -> None:
    reply = streaming_reply(member, "half")
    async_to_sync(snapshots.start)(reply.pk)
    async_to_sync(snapshots.append)(reply.pk, "half and more", 3)
    from chatsite.redis import get_redis

    get_redis().delete(f"chat:reply:{reply.pk}:beat")
    recovery.mark_orphaned_replies()
    reply.refresh_from_db()
    assert reply.content == "half and more"


def test_someone_elses_conversation_is_a_404(member: User) -> None:
    other = make_user("otto")
    conversation = Conversation.objects.create(owner=other)
    with pytest.raises(Http404):
        services.get_conversation_for_user(member, conversation.pk)
    assert services.get_conversation_for_user(other, conversation.pk) == conversation


def test_the_fallback_title_is_the_first_words() -> None:
    assert services.fallback_title("How do I sort a list in Python quickly?") == (
        "How do I sort a list…"
    )


def test_a_suggested_title_is_cleaned_to_one_plain_line() -> None:
    assert services.clean_title('Title: "**Sorting lists**"\nmore') == "Sorting lists"


def test_the_model_sees_the_system_prompt_and_skips_failed_replies(member: User) -> None:
    conversation = Conversation.objects.create(owner=member, system_prompt="Be brief.")
    Message.objects.create(conversation=conversation, role="user", content="a")
    Message.objects.create(
        conversation=conversation, role="assistant", status="error", content="", error="x"
    )
    turn = services.begin_regeneration(conversation, "m")
    assert turn.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
    ]
