"""Export of all of a person's conversations as one JSON file: memory stays bounded.

Run from the repository root: `.venv/bin/python bench/bench_export.py` (`--help` for sizes).
It generates `--conversations` conversations (default 5,000) of `--messages` messages each
for one person on a private SQLite (or, with `--postgres` and DATABASE_URL naming a
PostgreSQL server, a private database there), starts a real Daphne worker, downloads
`/c/export.json` through it and reports the time, the size, the worker's resident memory
before the download and its peak (VmHWM) after it; then checks the file holds every
conversation and message.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from harness import set_up_django, start_daphne, stop


def memory_kb(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and its peak so far (VmHWM), in kB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def generate(args: argparse.Namespace) -> tuple[object, int]:
    from django.utils import timezone

    from accounts.models import User
    from conversations.models import Conversation, Message

    rng = random.Random(5)
    person = User.objects.create(username="exporter", role=User.Role.MEMBER)
    now = timezone.now()
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=person, title=f"Chat {i}", model="llama3.2:latest", last_message_at=now)
        for i in range(args.conversations)
    )
    batch: list[Message] = []
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    for conversation in conversations:
        for i in range(args.messages):
            text = " ".join(rng.choices(words, k=rng.randint(20, 160)))
            role = "user" if i % 2 == 0 else "assistant"
            batch.append(Message(conversation=conversation, role=role, content=text,
                                 prompt_tokens=100, completion_tokens=80))  # fmt: skip
        if len(batch) >= 20_000:
            Message.objects.bulk_create(batch)
            batch.clear()
    Message.objects.bulk_create(batch)
    return person, Message.objects.count()


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    redis = set_up_django(data_dir)
    daphne = None
    try:
        from django.conf import settings
        from django.test import Client

        person, messages = generate(args)
        client = Client()
        client.force_login(person)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        daphne, port = start_daphne()
        url = f"http://127.0.0.1:{port}"
        cookies = {settings.SESSION_COOKIE_NAME: cookie}
        # Warm the worker up (imports, templates, a connection) before measuring.
        first = httpx.get(f"{url}/c/", cookies=cookies, timeout=30)
        assert first.status_code == 200, first.status_code
        before = memory_kb(daphne.pid)
        started = time.perf_counter()
        body = bytearray()
        first_byte = None
        with httpx.stream("GET", f"{url}/c/export.json", cookies=cookies, timeout=600) as answer:
            assert answer.status_code == 200, answer.status_code
            for chunk in answer.iter_bytes():
                first_byte = first_byte or time.perf_counter() - started
                body += chunk
        elapsed = time.perf_counter() - started
        after = memory_kb(daphne.pid)
        document = json.loads(body)
        exported = document["conversations"]
        assert len(exported) == args.conversations
        assert sum(len(c["messages"]) for c in exported) == messages
        from django.db import connection

        print(f"{connection.vendor}: {args.conversations:,} conversations, {messages:,} messages; "
              f"export {len(body) / 1e6:.1f} MB in {elapsed:.1f} s "
              f"(first byte after {first_byte * 1000:.0f} ms)")  # fmt: skip
        print(f"worker RSS before {before['VmRSS'] / 1024:.0f} MiB (peak so far "
              f"{before['VmHWM'] / 1024:.0f} MiB); after the export: RSS "
              f"{after['VmRSS'] / 1024:.0f} MiB, peak {after['VmHWM'] / 1024:.0f} MiB "
              f"(+{(after['VmHWM'] - before['VmHWM']) / 1024:.0f} MiB)")  # fmt: skip
    finally:
        stop(daphne)
        stop(redis)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--messages", type=int, default=10, help="per conversation")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    drop = None
    if args.postgres:
        from bench_search import private_postgres

        os.environ["DATABASE_URL"], drop = private_postgres(os.environ["DATABASE_URL"])
    else:
        os.environ.pop("DATABASE_URL", None)
    try:
        run(args)
    finally:
        if drop is not None:
            drop()  # type: ignore[operator]


if __name__ == "__main__":
    main()
