"""Opening a conversation: 1,000 messages vs 10, server time for the page.

Run from the repository root: `.venv/bin/python bench/bench_chat_open.py`.
Sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), creates two conversations whose replies are markdown with code, and
times GET /c/<id>/ through the whole Django stack (middleware, ORM, templates) with the
test client, median of several requests. The goal: the same order of time for both,
because only the latest 50 messages are rendered ("Load earlier messages" fetches more).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import set_up_django, stop

REPLY = (
    "Here is how to do it:\n\n```python\nfor item in items:\n    print(item)\n```\n\n"
    "- it is **simple**\n- it is `fast`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
)


def make_conversation(owner: object, messages: int) -> int:
    from conversations.markdown import render_markdown
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.create(
        owner=owner, title=f"{messages} messages", model="m", last_message_at="2025-01-01T00:00Z"
    )
    html = render_markdown(REPLY)
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user" if i % 2 == 0 else "assistant",
            content=f"Question {i}?" if i % 2 == 0 else REPLY,
            html="" if i % 2 == 0 else html,
            model="m",
            completion_tokens=40,
            eval_duration_ns=10**9,
        )
        for i in range(messages)
    )
    return conversation.pk


def time_page(client: object, pk: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(f"/c/{pk}/")  # type: ignore[attr-defined]
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    redis_process = set_up_django(data_dir)
    try:
        from django.conf import settings
        from django.test import Client

        settings.ALLOWED_HOSTS = ["*"]
        settings.STORAGES["staticfiles"]["BACKEND"] = (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
        from accounts.models import User

        user = User.objects.create_user("bench", password="x", role=User.Role.MEMBER)
        small = make_conversation(user, 10)
        large = make_conversation(user, 1000)
        client = Client()
        client.force_login(user)
        time_page(client, small, 3)  # warm up
        small_time = time_page(client, small, args.repeat)
        large_time = time_page(client, large, args.repeat)
        print(f"10 messages:    {small_time * 1000:6.1f} ms (median of {args.repeat})")
        print(f"1,000 messages: {large_time * 1000:6.1f} ms (median of {args.repeat})")
        print(f"ratio: {large_time / small_time:.2f} (50 latest rendered, older on demand)")
    finally:
        if redis_process is not None:
            stop(redis_process)


if __name__ == "__main__":
    main()
