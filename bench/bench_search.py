"""Search of conversations over a million messages on PostgreSQL.

Run from the repository root with a PostgreSQL server:
`DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_search.py`
(`--help` for sizes). A private database is created on that server for the run and dropped
after it. It generates `--messages` messages (default 1,000,000) in `--conversations`
conversations of `--people` people (by default one person owns them all: the worst case
for a person's search), with text drawn from a Zipf-distributed vocabulary, so that words
range from rare to very common; then times the sidebar search (`GET /c/?q=...`, through
Django's full request handling: count, page of 50, snippets, template) for one-word queries
of each frequency, a partial word and two words, `--repeat` times after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from harness import quiet_collector, set_up_django, stop

SYLLABLES = ["ka", "lo", "mi", "ter", "van", "os", "ru", "pel", "dis", "qua", "ne", "zor", "bi",
             "tam", "gu", "fen", "sho", "ix", "ul", "dre"]  # fmt: skip


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(sorted(words), key=lambda w: rng.random())  # the same list in every run


def private_postgres(url: str) -> tuple[str, object]:
    """A new database on the server of `url` for this run, and how to drop it."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"bench_search_{os.getpid()}"
    admin = psycopg.connect(
        dbname="postgres", user=config["USER"], password=config["PASSWORD"] or None,
        host=config["HOST"] or None, port=config["PORT"] or None, autocommit=True,
    )  # fmt: skip
    admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return url.rsplit("/", 1)[0] + "/" + name, drop


def generate(args: argparse.Namespace, words: list[str]) -> list[object]:
    """People, conversations and messages; returns the people."""
    from django.utils import timezone

    from accounts.models import User
    from conversations.models import Conversation, Message

    rng = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    people = [
        User.objects.create(username=f"p{i}", role=User.Role.MEMBER) for i in range(args.people)
    ]
    now = timezone.now()
    conversations = Conversation.objects.bulk_create(
        Conversation(
            owner=people[i % len(people)],
            title=" ".join(rng.choices(words, weights, k=3)),
            model="llama3.2:latest",
            last_message_at=now - timedelta(minutes=i),  # the sidebar's order
        )
        for i in range(args.conversations)
    )
    per = args.messages // len(conversations)
    batch: list[Message] = []
    for conversation in conversations:
        for i in range(per):
            text = " ".join(rng.choices(words, weights, k=rng.randint(8, 40)))
            role = "user" if i % 2 == 0 else "assistant"
            batch.append(Message(conversation=conversation, role=role, content=text))
        if len(batch) >= 20_000:
            Message.objects.bulk_create(batch)
            batch.clear()
    Message.objects.bulk_create(batch)
    return people


def frequency(word: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM conversations_message WHERE to_tsvector('simple'::regconfig, "
            "COALESCE(content, '')) @@ to_tsquery('simple', %s)",
            [word],
        )
        return cursor.fetchone()[0]


def time_query(client: object, query: str, repeat: int) -> dict[str, float]:
    client.get("/c/", {"q": query})  # type: ignore[attr-defined]  # warm-up
    times = []
    with quiet_collector():
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get("/c/", {"q": query})  # type: ignore[attr-defined]
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (response.status_code, response.content[:300])
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(len(times) * 0.95) - 1],
            "max": times[-1]}  # fmt: skip


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-search-"))
    redis = set_up_django(data_dir)
    try:
        from django.db import connection
        from django.test import Client

        rng = random.Random(11)
        words = vocabulary(args.vocabulary, rng)
        started = time.perf_counter()
        people = generate(args, words)
        generated = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE conversations_message")
            cursor.execute("VACUUM ANALYZE conversations_conversation")
        client = Client()
        client.force_login(people[0])
        queries = {
            "very common word (rank 1)": words[0],
            "common word (rank 10)": words[9],
            "medium word (rank 300)": words[299],
            "rare word (rank 2900)": words[2899],
            "absent word": "zzzabsent",
            "partial word (prefix of rank 300)": words[299][:4],
            "two words (ranks 10 and 300)": f"{words[9]} {words[299]}",
        }
        print(f"{args.messages:,} messages in {args.conversations:,} conversations of "
              f"{args.people} people, generated and indexed in {generated:.0f} s")  # fmt: skip
        print(f"{'query':<36} {'messages':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, query in queries.items():
            count = frequency(" & ".join(f"{w}:*" for w in query.split()))
            figures = time_query(client, query, args.repeat)
            print(f"{name:<36} {count:>9,} {figures['p50']:>8.1f} {figures['p95']:>8.1f} "
                  f"{figures['max']:>8.1f}")  # fmt: skip
    finally:
        from django.db import connections

        connections.close_all()
        stop(redis)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=1)
    parser.add_argument("--vocabulary", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench_search measures PostgreSQL: set DATABASE_URL to a PostgreSQL server")
    os.environ["DATABASE_URL"], drop = private_postgres(url)
    try:
        run(args)
    finally:
        drop()  # type: ignore[operator]


if __name__ == "__main__":
    main()
