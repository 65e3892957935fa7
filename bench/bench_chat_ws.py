"""Websocket chats on one Daphne worker: delay from upstream token to frame, CPU per token.

Run from the repository root: `.venv/bin/python bench/bench_chat_ws.py`
(needs the `websockets` package: `.venv/bin/pip install websockets`).

Sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), starts the mock upstream in its own process (tokens 20 ms apart, so
50 tokens/s per chat; it records when it writes each token), and one Daphne worker per
configuration. N clients (spread over the first 2 s) each send a message on their own
conversation and read frames until the reply is complete. Reported per run:

  p50/p99 delay  from the mock writing a token to the frame that first shows it; also
                 split: tokens written while chats were still starting (before the last
                 chat's first token) and after
  in order       every reply arrived whole, in order, with no token missing or repeated
  CPU/token      the Daphne worker's CPU time (user+system) / tokens relayed
  handshake max  the slowest opening handshake of the run (Daphne gives up on one at 5 s)
  threads        the worker's event loop and its other threads (the database thread) as
                 shares of one core, in the busiest second while the chats start and after

Runs: a bare relay (raw ASGI websocket app: httpx to websocket, one frame per token, no
channel layer, no rendering) and the chat with each channels-redis layer at N=150; then
the chosen layer at growing N to find the largest that keeps p99 under 250 ms; then the
memory of idle sockets. Each worker first serves a few chats that are not measured (its
warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, quiet_collector, set_up_django, start_daphne

MODEL = "llama3.2:latest"
PARAGRAPH = 30  # tokens per paragraph in the reply
LAYERS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
TOKEN = re.compile(r"tok(\d+)")
WARM_UP = 5  # chats through each worker before it is measured (see `warm_up`)


def reply_text(tokens: int) -> str:
    words = [f"tok{i}" for i in range(tokens)]
    paragraphs = [" ".join(words[i : i + PARAGRAPH]) for i in range(0, tokens, PARAGRAPH)]
    return "\n\n".join(paragraphs)


# -- the mock upstream, in its own process, timing each token it writes ------------------


def _mock_process(conn: object, tokens: int, delay: float) -> None:
    from tests import mock_upstream

    class TimedRecord(mock_upstream.StreamRecord):
        def __setattr__(self, name: str, value: object) -> None:
            if name == "tokens_sent" and value:
                self.__dict__.setdefault("times", []).append(time.monotonic())
            object.__setattr__(self, name, value)

    class TimedMock(mock_upstream.MockUpstream):
        def _record(self, request):  # type: ignore[no-untyped-def]
            record = super()._record(request)
            messages = request.body.get("messages") or [{}]
            record.key = messages[-1].get("content", "")  # type: ignore[attr-defined]
            return record

    mock_upstream.StreamRecord = TimedRecord  # type: ignore[misc]
    with TimedMock() as mock:
        mock.script(text=reply_text(tokens), delay=delay)
        conn.send(mock.url)  # type: ignore[attr-defined]
        while True:
            command = conn.recv()  # type: ignore[attr-defined]
            if command == "dump":
                conn.send(  # type: ignore[attr-defined]
                    {getattr(r, "key", ""): r.__dict__.get("times", []) for r in mock.streams}
                )
                mock.streams.clear()
                mock.requests.clear()
            else:
                return


# -- the bare relay: raw ASGI, httpx to websocket, no channel layer, no rendering --------

_relay_client = None


async def relay_application(scope: dict, receive: object, send: object) -> None:
    """A websocket that streams the mock's reply, one frame per token."""
    import httpx

    global _relay_client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]
        return
    if _relay_client is None:
        _relay_client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2000), timeout=60)
    await receive()  # type: ignore[operator]
    await send({"type": "websocket.accept"})  # type: ignore[operator]
    url = os.environ["MOCK_URL"] + "/api/chat"
    while True:
        message = await receive()  # type: ignore[operator]
        if message["type"] == "websocket.disconnect":
            return
        content = json.loads(message["text"])["content"]
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        async with _relay_client.stream("POST", url, json=body) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                chunk = json.loads(line)
                if chunk.get("done"):
                    break
                await send({"type": "websocket.send", "text": chunk["message"]["content"]})  # type: ignore[operator]
        await send({"type": "websocket.send", "text": "status-complete"})  # type: ignore[operator]


# -- set-up ------------------------------------------------------------------------------


def set_up(data_dir: Path) -> object:
    redis_process = set_up_django(data_dir)
    # A settings module per channel layer, for the Daphne workers.
    for name, backend in LAYERS.items():
        (data_dir / f"bench_settings_{name}.py").write_text(
            "from chatsite.settings import *  # noqa\n"
            # The product's layer settings (its connections), with this backend.
            f"CHANNEL_LAYERS['default']['BACKEND'] = {backend!r}\n"
            # An experiment, not the product's setting: the interpreter's thread switch
            # interval in the worker (how soon the database thread gets the lock back).
            + (
                f"import sys; sys.setswitchinterval({os.environ['BENCH_SWITCH_INTERVAL']})\n"
                if os.environ.get("BENCH_SWITCH_INTERVAL")
                else ""
            )
            # An experiment, not the product's setting: persistent database connections.
            + (
                f"DATABASES['default']['CONN_MAX_AGE'] = {os.environ['BENCH_CONN_MAX_AGE']}\n"
                if os.environ.get("BENCH_CONN_MAX_AGE")
                else ""
            )
        )
    return redis_process


def start_worker(application: str, settings_module: str, data_dir: Path, mock_url: str):  # type: ignore[no-untyped-def]
    env = {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYTHONPATH": os.pathsep.join([str(data_dir), str(ROOT / "bench"), str(ROOT)]),
        "MOCK_URL": mock_url,
    }
    return start_daphne(application, env=env, log_path=data_dir / "daphne.log")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others (all CPUs): a noisy neighbour shows here."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def thread_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the worker's event loop (its main thread) and of all its other
    threads (the database thread, mostly)."""
    tick = os.sysconf("SC_CLK_TCK")
    loop = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if task.name == str(pid):
            loop += seconds
        else:
            others += seconds
    return loop, others


class ThreadShares:
    """The worker's event loop and other threads, as shares of one core, sampled every
    quarter second; reported for the busiest second that starts in the first `window`
    seconds (while the chats start) and for the rest of the run.

    The two share one interpreter lock: where they add up to about 100 %, the database
    thread's time is taken from the event loop."""

    STEP = 0.25

    def __init__(self, pid: int, window: float) -> None:
        self.pid, self.window = pid, window
        self.samples: list[tuple[float, float, float]] = []  # (elapsed, loop, others)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ThreadShares:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _sample(self) -> None:
        began = time.monotonic()
        last = thread_seconds(self.pid)
        while not self.done.wait(self.STEP):
            now = thread_seconds(self.pid)
            self.samples.append((time.monotonic() - began, now[0] - last[0], now[1] - last[1]))
            last = now

    def summary(self) -> str:
        """The busiest second while the chats start, and the mean after it."""
        per_second = round(1 / self.STEP)
        seconds = [
            self.samples[i : i + per_second]
            for i in range(len(self.samples) - per_second + 1)
            if self.samples[i][0] <= self.window
        ]
        if not seconds:
            return "-"
        busiest = max(seconds, key=lambda rows: sum(r[1] + r[2] for r in rows))
        after = [r for r in self.samples if r[0] > busiest[-1][0] and r[1] + r[2] > 0]
        return f"busiest second while starting: {_shares(busiest, self.STEP)}; after: " + (
            _shares(after, self.STEP) if after else "-"
        )


def _shares(rows: list[tuple[float, float, float]], step: float) -> str:
    loop, others = (sum(r[i] for r in rows) / (len(rows) * step) * 100 for i in (1, 2))
    return f"event loop {loop:.0f} % + other threads {others:.0f} % of a core"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def make_rows(count: int) -> tuple[str, list[int]]:
    """An admin (no quota limits), `count` conversations; the session cookie and ids."""
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from conversations.models import Conversation

    user = User.objects.filter(username="bench").first()
    if user is None:
        user = User.objects.create_user("bench", password="x", role=User.Role.ADMIN)
    # Not drafts, so no title request follows each reply.
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=user, model=MODEL, last_message_at=timezone.now()) for _ in range(count)
    )
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, [c.pk for c in conversations]


# -- a run -------------------------------------------------------------------------------


@dataclass
class Chat:
    key: str
    frames: list[tuple[float, int]] = field(default_factory=list)
    final: list[int] = field(default_factory=list)
    error: str = ""
    handshake: float | None = None  # seconds from connecting to the socket's opening


async def run_chat(
    url: str, cookie: str, chat: Chat, start_at: float, relay: bool, tokens: int
) -> None:
    import websockets

    origin = "http://" + url.split("://", 1)[1].split("/", 1)[0]  # the page's own origin
    headers = {"Origin": origin, "Cookie": f"sessionid={cookie}"}
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    connecting = time.monotonic()
    try:
        async with websockets.connect(
            url, additional_headers=headers, max_size=2**24, open_timeout=30
        ) as ws:
            chat.handshake = time.monotonic() - connecting
            await ws.send(json.dumps({"action": "send", "content": chat.key, "model": MODEL}))
            seen = -1
            async with asyncio.timeout(tokens * 0.02 + 60):
                while True:
                    frame = await ws.recv()
                    now = time.monotonic()
                    if "status-complete" in frame or "status-error" in frame:
                        if "status-error" in frame:
                            chat.error = "error"
                        if not relay:
                            body = frame.split("-body", 1)[1]
                            chat.final = [int(i) for i in TOKEN.findall(body)]
                        chat.frames.append((now, tokens - 1))
                        return
                    found = TOKEN.findall(frame)
                    if found:
                        top = max(int(i) for i in found)
                        if relay:
                            chat.final.append(int(found[0]))
                        if top > seen:
                            seen = top
                            chat.frames.append((now, top))
    except Exception as exc:
        chat.error = repr(exc)


def delays(chat: Chat, times: list[float]) -> list[float]:
    """Per token: when a frame first showed it minus when the mock wrote it."""
    result = []
    frame_index = 0
    for token, written in enumerate(times):
        while frame_index < len(chat.frames) and chat.frames[frame_index][1] < token:
            frame_index += 1
        if frame_index == len(chat.frames):
            break
        result.append(chat.frames[frame_index][0] - written)
    return result


def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted delays in seconds, in ms (nan when there are none)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def split_at_last_start(
    samples: list[tuple[float, int, float]], written: dict[str, list[float]]
) -> tuple[list[float], list[float]]:
    """The delays (sorted) of tokens the mock wrote before the last chat's first token, while
    chats were still starting, and of those after."""
    firsts = [times[0] for times in written.values() if times]
    cut = max(firsts) if firsts else float("inf")
    starting = sorted(d for t, _, d in samples if t < cut)
    return starting, sorted(d for t, _, d in samples if t >= cut)


def socket_url(port: int, relay: bool, conversation_id: int) -> str:
    return f"ws://127.0.0.1:{port}/" if relay else f"ws://127.0.0.1:{port}/ws/c/{conversation_id}/"


def warm_up(port, conn, cookie, conversation_ids, relay, tokens) -> None:  # type: ignore[no-untyped-def]
    """A few chats through a new worker before it is measured, all at once: a worker's
    first chats pay costs it pays once (templates compiled, the model catalog discovered,
    HTTP clients made), which are not what a run measures."""
    chats = [Chat(key=f"warm-up-{i}") for i in range(len(conversation_ids))]

    async def all_chats() -> None:
        now = time.monotonic()
        await asyncio.gather(
            *(
                run_chat(socket_url(port, relay, pk), cookie, chat, now, relay, tokens)
                for chat, pk in zip(chats, conversation_ids, strict=True)
            )
        )

    asyncio.run(all_chats())
    failed = [chat.error for chat in chats if chat.error]
    if failed:
        raise RuntimeError(f"the warm-up failed: {failed[:2]}")
    conn.send("dump")  # and forget its tokens
    conn.recv()


def run(  # type: ignore[no-untyped-def]
    label, port, pid, conn, cookie, conversation_ids, relay, tokens, spread, dump=""
) -> dict:
    chats = [Chat(key=f"{label}-{i}-{time.monotonic_ns()}") for i in range(len(conversation_ids))]

    async def all_chats() -> None:
        begin = time.monotonic() + 0.5
        await asyncio.gather(
            *(
                run_chat(
                    socket_url(port, relay, pk),
                    cookie,
                    chat,
                    begin + spread * i / len(chats),
                    relay,
                    tokens,
                )
                for i, (chat, pk) in enumerate(zip(chats, conversation_ids, strict=True))
            )
        )

    load = os.getloadavg()[0]  # other work on the machine skews every figure: show it
    cpu_before, steal_before = cpu_seconds(pid), steal_seconds()
    with quiet_collector(), ThreadShares(pid, 0.5 + spread + 1.0) as threads:
        asyncio.run(all_chats())
    cpu = cpu_seconds(pid) - cpu_before
    steal = steal_seconds() - steal_before
    conn.send("dump")
    written = conn.recv()
    all_delays: list[float] = []
    whole = 0
    errors = [chat.error for chat in chats if chat.error]
    samples = []  # (when the mock wrote it, token index, delay), for --dump
    for chat in chats:
        times = written.get(chat.key, [])
        chat_delays = delays(chat, times)
        all_delays += chat_delays
        samples += [(t, i, d) for i, (t, d) in enumerate(zip(times, chat_delays, strict=False))]
        if chat.final == list(range(tokens)) and len(times) == tokens:
            whole += 1
    if dump:
        Path(f"{dump}-{label.replace(' ', '_').strip('()')}-{len(chats)}.json").write_text(
            json.dumps(samples)
        )
    all_delays.sort()
    starting, streaming = split_at_last_start(samples, written)
    handshakes = sorted(chat.handshake for chat in chats if chat.handshake is not None)
    relayed = tokens * len(chats)
    result = {
        "label": label,
        "n": len(chats),
        "p50": quantile(all_delays, 0.5),
        "p99": quantile(all_delays, 0.99),
        "whole": whole,
        "errors": errors[:3],
        "cpu_per_token_us": cpu / relayed * 1e6,
        "cpu": cpu,
        "handshake_max": handshakes[-1] * 1000 if handshakes else float("nan"),
    }
    print(
        f"{label:>14}  N={result['n']:<4} p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms"
        f"  in order {whole}/{len(chats)}  CPU {cpu:5.2f} s = "
        f"{result['cpu_per_token_us']:5.0f} µs/token"
        + f"  handshake max {result['handshake_max']:.0f} ms"
        + f"  (load before {load:.2f}, steal {steal:.2f} s)"
        + (f"  errors: {errors[:2]}" if errors else ""),
        flush=True,
    )
    print(
        f"{'':>14}  delay while the chats start p50/p99 {quantile(starting, 0.5):.0f}"
        f"/{quantile(starting, 0.99):.0f} ms ({len(starting)} tokens), after"
        f" {quantile(streaming, 0.5):.0f}/{quantile(streaming, 0.99):.0f} ms",
        flush=True,
    )
    print(f"{'':>14}  threads {threads.summary()}", flush=True)
    return result


# Issue 16's goals for the chat beside the bare relay, in the same run.
CPU_GOAL = 1.3  # CPU per token at most this many times the relay's
P99_GOAL = (1.5, 50.0)  # p99 delay at most this many times the relay's, plus this many ms


def against_the_relay(name: str, chat: dict, relay: dict) -> str:
    """The chat's CPU per token and p99 delay against the relay's, and whether each meets
    its goal."""
    cpu = chat["cpu_per_token_us"] / relay["cpu_per_token_us"]
    p99_limit = P99_GOAL[0] * relay["p99"] + P99_GOAL[1]
    return (
        f"{name}: CPU/token {cpu:.2f}x the bare relay (goal <= {CPU_GOAL}: "
        f"{'met' if cpu <= CPU_GOAL else 'not met'}); p99 {chat['p99']:.0f} ms "
        f"(goal <= {p99_limit:.0f} ms: {'met' if chat['p99'] <= p99_limit else 'not met'})"
    )


def idle_memory(port: int, pid: int, cookie: str, conversation_ids: list[int]) -> float:
    import websockets

    async def hold() -> float:
        before = rss_bytes(pid)
        headers = {"Origin": f"http://127.0.0.1:{port}", "Cookie": f"sessionid={cookie}"}
        sockets = []
        for pk in conversation_ids:
            sockets.append(
                await websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/c/{pk}/", additional_headers=headers
                )
            )
        await asyncio.sleep(2)
        after = rss_bytes(pid)
        for ws in sockets:
            await ws.close()
        return (after - before) / len(sockets)

    return asyncio.run(hold())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300, help="tokens per reply")
    parser.add_argument("--chats", type=int, default=150)
    parser.add_argument("--sweep", default="200,250,300,400", help="extra N for the chosen layer")
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets for memory")
    parser.add_argument("--spread", type=float, default=2.0, help="seconds over which chats start")
    parser.add_argument("--layers", default=",".join(LAYERS), help="channel layers to compare")
    parser.add_argument("--no-relay", action="store_true", help="skip the bare relay run")
    parser.add_argument(
        "--dump", default="", help="write each run's per-token delays to PREFIX-label-N.json"
    )
    parser.add_argument(
        "--profile", default=os.environ.get("PYSPY_OUT", ""),
        help="py-spy raw output prefix for each chat worker's N=--chats run",
    )  # fmt: skip
    args = parser.parse_args()
    layers = [name for name in args.layers.split(",") if name]

    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    parent, child = multiprocessing.Pipe()
    mock = multiprocessing.Process(
        target=_mock_process, args=(child, args.tokens, 0.02), daemon=True
    )  # ends with the benchmark, even one that fails
    mock.start()
    mock_url = parent.recv()
    redis_process = set_up(data_dir)
    from llm.models import Connection

    Connection.objects.update_or_create(
        name="mock", defaults={"kind": "ollama", "base_url": mock_url}
    )
    results = {}
    try:
        if not args.no_relay:
            daphne, port = start_worker(
                "bench_chat_ws:relay_application", "chatsite.settings", data_dir, mock_url
            )
            try:
                warm_up(port, parent, "", [0] * WARM_UP, True, args.tokens)
                results["relay"] = run(
                    "bare relay", port, daphne.pid, parent, "", [0] * args.chats, True,
                    args.tokens, args.spread, args.dump,
                )  # fmt: skip
            finally:
                daphne.terminate()
                daphne.wait()
        for name in layers:
            daphne, port = start_worker(
                "chatsite.asgi:application", f"bench_settings_{name}", data_dir, mock_url
            )
            try:
                cookie, ids = make_rows(WARM_UP + args.chats)
                warm_up(port, parent, cookie, ids[:WARM_UP], False, args.tokens)
                ids = ids[WARM_UP:]
                if args.profile:  # profile the chat worker during the run
                    subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                         str(daphne.pid), "-o", f"{args.profile}-{name}", "-f",
                         "raw", "-d", os.environ.get("PYSPY_SECONDS", "10"),
                         "-r", os.environ.get("PYSPY_RATE", "100"), "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                results[name] = run(
                    f"chat ({name})", port, daphne.pid, parent, cookie, ids, False,
                    args.tokens, args.spread, args.dump,
                )  # fmt: skip
            finally:
                daphne.terminate()
                daphne.wait()
        ok = [
            name for name in layers
            if results[name]["whole"] == args.chats and results[name]["p99"] < 250
        ]  # fmt: skip
        chosen = min(ok or layers, key=lambda name: results[name]["cpu_per_token_us"])
        if "relay" in results:
            for name in layers:
                print(against_the_relay(name, results[name], results["relay"]))
        print(f"chosen layer: {chosen}")
        if not args.sweep and not args.idle:
            return
        daphne, port = start_worker(
            "chatsite.asgi:application", f"bench_settings_{chosen}", data_dir, mock_url
        )
        try:
            cookie, ids = make_rows(WARM_UP)
            warm_up(port, parent, cookie, ids, False, args.tokens)
            best = args.chats if chosen in ok else 0
            for n in [int(n) for n in args.sweep.split(",") if n]:
                cookie, ids = make_rows(n)
                result = run(
                    f"chat ({chosen})", port, daphne.pid, parent, cookie, ids, False,
                    args.tokens, args.spread, args.dump,
                )  # fmt: skip
                if result["p99"] >= 250 or result["whole"] < n:
                    break
                best = n
            if args.sweep:
                print(f"largest N meeting p99 < 250 ms with every token in order: {best}")
            if args.idle:
                cookie, ids = make_rows(args.idle)
                per_socket = idle_memory(port, daphne.pid, cookie, ids)
                print(f"memory per idle socket: {per_socket / 1024:.1f} KiB ({args.idle} sockets)")
        finally:
            daphne.terminate()
            daphne.wait()
    finally:
        parent.send("quit")
        mock.join(5)
        if redis_process is not None:
            from chatsite.embedded import stop

            stop(redis_process)


if __name__ == "__main__":
    main()
