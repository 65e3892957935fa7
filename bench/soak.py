"""A long run of mixed traffic on one Daphne worker: does anything leak or fail?

Run from the repository root: `.venv/bin/python bench/soak.py --minutes 30`.

Sets up Django on a temporary DATA_DIR (SQLite, the embedded Redis unless REDIS_URL is set),
the mock upstream in its own process (replies of 100 tokens 20 ms apart) and one Daphne
worker started as `make run` starts it (`chatsite.serve`). Then, for `--minutes`:

  chats     browser chats over the websocket, each on its own conversation: send a turn,
            read frames until the reply is complete, every three turns close the socket
            and open a new one (as page loads do), every twelve start a new conversation
  streams   API streams, alternating /api/chat (NDJSON) and /v1/chat/completions (SSE),
            each a new client, read to the end

Every 30 s it samples the worker's resident memory, open file descriptors and threads, and
Redis's key count, keys without an expiry and connected clients. When traffic stops it
waits for what expires by design (snapshots of finished replies, per-minute counters) and
samples again. It fails (exit 1) on any error, on memory at the end above the bound
(`--memory-growth`: the sample after warm-up times 1.10 plus 16 MiB by default), on file
descriptors, threads or keys without expiry above their warm-up level plus a small margin
once idle, or on more Redis clients once idle than the worker's pools may hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import ROOT, set_up_django, start_daphne, stop

from chatsite.redis import REDIS_CONNECTIONS

MODEL = "llama3.2:latest"
SAMPLE_EVERY = 30.0
WARM_UP = 120.0  # seconds of traffic before the reference sample
# A person starts a new chat now and then: a conversation that only ever grew would make
# every turn send (and the worker hold) a longer history than a team's chats have.
TURNS_PER_CONVERSATION = 12
IDLE_WAIT = 150.0  # finished replies' snapshots expire 120 s after their end
# Redis clients beyond the worker's pool (the sync client's, this script's own; the channel
# layer's two per connection are added where used): the pool keeps open the connections a
# burst opened, up to its size.
OTHER_REDIS_CLIENTS = 10


@dataclass
class Tally:
    chat_turns: int = 0
    api_streams: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors[-1] = f"... and more ({what})"


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    threads: int
    redis_keys: int
    persistent_keys: int
    redis_clients: int


def worker_sample(pid: int, began: float) -> Sample:
    import redis
    from django.conf import settings

    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = {line.split(":")[0]: line.split(":")[1].split() for line in status}
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = client.keys("*")
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.ttl(key)
    persistent = sum(1 for ttl in pipe.execute() if ttl == -1)
    return Sample(
        at=time.monotonic() - began,
        rss_mib=int(values["VmRSS"][0]) / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(values["Threads"][0]),
        redis_keys=len(keys),
        persistent_keys=persistent,
        redis_clients=int(client.info("clients")["connected_clients"]),
    )


def make_rows(chats: int) -> tuple[str, str, list[int]]:
    """An admin (no quota limits) with a key and `chats` conversations."""
    from django.test import Client
    from django.utils import timezone

    from accounts.models import ApiKey, User
    from conversations.models import Conversation

    user = User.objects.create_user("soak", password="x", role=User.Role.ADMIN)
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=user, model=MODEL, last_message_at=timezone.now()) for _ in range(chats)
    )
    client = Client()
    client.force_login(user)
    secret = ApiKey.issue(user, "soak")[1]
    return client.cookies["sessionid"].value, secret, [c.pk for c in conversations]


def new_conversation(conversation: int) -> int:
    """Another conversation of the owner of `conversation` (a person starting a new chat)."""
    from django.db import close_old_connections
    from django.utils import timezone

    from conversations.models import Conversation

    close_old_connections()
    owner = Conversation.objects.get(pk=conversation).owner_id
    created = Conversation.objects.create(
        owner_id=owner, model=MODEL, last_message_at=timezone.now()
    )
    return created.pk


async def chat_loop(base: str, cookie: str, conversation: int, until: float, tally: Tally) -> None:
    """Turn after turn, a new socket every three turns and a new conversation every
    `TURNS_PER_CONVERSATION` turns."""
    import websockets

    headers = {"Origin": base, "Cookie": f"sessionid={cookie}"}
    turn = 0
    while time.monotonic() < until:
        if turn and turn % TURNS_PER_CONVERSATION == 0:
            conversation = await asyncio.to_thread(new_conversation, conversation)
        url = base.replace("http://", "ws://") + f"/ws/c/{conversation}/"
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
                for _ in range(3):
                    if time.monotonic() >= until:
                        return
                    turn += 1
                    await ws.send(json.dumps({"action": "send", "content": f"turn {turn}"}))
                    async with asyncio.timeout(60):
                        while True:
                            frame = str(await ws.recv())
                            if "status-error" in frame:
                                tally.fail(f"chat {conversation}: error reply")
                                break
                            if "status-complete" in frame and "tok99" in frame:
                                tally.chat_turns += 1
                                break
        except Exception as exc:
            tally.fail(f"chat {conversation}: {exc!r}")
            await asyncio.sleep(1)


async def stream_loop(base: str, secret: str, index: int, until: float, tally: Tally) -> None:
    """API streams one after another, each from a new client, both doors in turn."""
    openai = index % 2 == 1
    path, done = ("/v1/chat/completions", b"[DONE]") if openai else ("/api/chat", b'"done":true')
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    while time.monotonic() < until:
        try:
            async with (
                httpx.AsyncClient(base_url=base, timeout=60) as client,
                client.stream(
                    "POST", path, json=body, headers={"Authorization": f"Bearer {secret}"}
                ) as response,
            ):
                data = b"".join([chunk async for chunk in response.aiter_bytes()])
            if response.status_code != 200 or done not in data:
                tally.fail(f"{path}: {response.status_code} {data[-200:]!r}")
            else:
                tally.api_streams += 1
        except Exception as exc:
            tally.fail(f"{path}: {exc!r}")
            await asyncio.sleep(1)


async def sampler(pid: int, began: float, until: float, samples: list[Sample]) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(SAMPLE_EVERY)
        sample = await asyncio.to_thread(worker_sample, pid, began)
        samples.append(sample)
        show(sample)


def show(sample: Sample) -> None:
    print(
        f"{sample.at / 60:6.1f} min  RSS {sample.rss_mib:7.1f} MiB  fds {sample.fds:4}  "
        f"threads {sample.threads:3}  redis keys {sample.redis_keys:5} "
        f"(no expiry {sample.persistent_keys:3})  redis clients {sample.redis_clients:3}",
        flush=True,
    )


async def soak(
    args: argparse.Namespace, base: str, pid: int, rows: tuple[str, str, list[int]]
) -> tuple[Tally, list[Sample]]:
    cookie, secret, conversations = rows
    tally, samples = Tally(), []
    began = time.monotonic()
    until = began + args.minutes * 60
    samples.append(await asyncio.to_thread(worker_sample, pid, began))
    show(samples[0])
    tasks = [chat_loop(base, cookie, c, until, tally) for c in conversations]
    tasks += [stream_loop(base, secret, i, until, tally) for i in range(args.streams)]
    await asyncio.gather(sampler(pid, began, until, samples), *tasks)
    print(f"traffic over; waiting up to {IDLE_WAIT:.0f} s for what expires by design", flush=True)
    deadline = time.monotonic() + IDLE_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(10)
        idle = await asyncio.to_thread(worker_sample, pid, began)
        if idle.redis_keys <= samples[0].redis_keys + 5:
            break
    samples.append(idle)
    show(idle)
    return tally, samples


def key_patterns() -> dict[str, tuple[int, int]]:
    """The keys in Redis by pattern (digits as N): how many, and the longest time to live."""
    import re

    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    found: dict[str, tuple[int, int]] = {}
    for key in client.keys("*"):
        pattern = re.sub(rb"\d+", b"N", key).decode(errors="replace")
        count, longest = found.get(pattern, (0, -1))
        found[pattern] = (count + 1, max(longest, client.ttl(key)))
    return found


def verdict(args: argparse.Namespace, tally: Tally, samples: list[Sample]) -> list[str]:
    """What went wrong, if anything."""
    from django.conf import settings

    warm = next((s for s in samples if s.at >= min(WARM_UP, args.minutes * 30)), samples[0])
    end, idle = samples[-2], samples[-1]
    bound = warm.rss_mib * (1 + args.memory_growth) + 16
    problems = list(tally.errors)
    if end.rss_mib > bound:
        problems.append(f"memory grew: {warm.rss_mib:.1f} -> {end.rss_mib:.1f} MiB > {bound:.1f}")
    if idle.fds > warm.fds + 5:
        problems.append(f"file descriptors leaked: {warm.fds} -> {idle.fds} once idle")
    if idle.threads > warm.threads + 2:
        problems.append(f"threads leaked: {warm.threads} -> {idle.threads} once idle")
    if idle.persistent_keys > samples[0].persistent_keys + 2:
        problems.append(
            f"Redis keys without expiry: {samples[0].persistent_keys} -> {idle.persistent_keys}"
        )
    if idle.redis_keys > samples[0].redis_keys + 5:
        problems.append(
            f"Redis keys left: {samples[0].redis_keys} -> {idle.redis_keys} once idle: "
            f"{key_patterns()}"
        )
    layer_clients = 2 * settings.CHANNEL_LAYER_CONNECTIONS  # a publisher and a subscriber
    clients_bound = REDIS_CONNECTIONS + layer_clients + OTHER_REDIS_CLIENTS
    if idle.redis_clients > clients_bound:
        problems.append(f"Redis clients leaked: {idle.redis_clients} once idle > {clients_bound}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--chats", type=int, default=100, help="concurrent websocket chats")
    parser.add_argument("--streams", type=int, default=50, help="concurrent API streams")
    parser.add_argument("--memory-growth", type=float, default=0.10)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-soak-"))
    redis_process = set_up_django(data_dir)
    mock = subprocess.Popen(
        [sys.executable, "-m", "tests.mock_upstream", "--tokens", "100", "--delay", "0.02"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert mock.stdout is not None
    mock_url = mock.stdout.readline().strip()
    from llm.models import Connection

    Connection.objects.create(name="mock", kind=Connection.Kind.OLLAMA, base_url=mock_url)
    worker, port = start_daphne(log_path=data_dir / "daphne.log")
    try:
        rows = make_rows(args.chats)
        tally, samples = asyncio.run(soak(args, f"http://127.0.0.1:{port}", worker.pid, rows))
    finally:
        stop(worker)
        stop(mock)
        stop(redis_process)
    problems = verdict(args, tally, samples)
    print(
        f"\n{args.minutes:g} min, {args.chats} chats + {args.streams} API streams: "
        f"{tally.chat_turns} chat turns, {tally.api_streams} API streams, "
        f"{len(tally.errors)} errors"
    )
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("OK: no error, memory within bound, nothing left behind once idle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
