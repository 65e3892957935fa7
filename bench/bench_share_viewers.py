"""Live share viewers of one reply on one Daphne worker: delay from upstream token to each
viewer's socket, every token in order, worker CPU per delivered frame.

Run from the repository root: `.venv/bin/python bench/bench_share_viewers.py`
(needs the `websockets` package, as `bench_chat_ws.py`).

Sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), starts the mock upstream in its own process (tokens 20 ms apart, so one
reply at 50 tokens/s; it records when it writes each token), and one Daphne worker. A run:
a conversation, a live "anyone" link to it, N viewer sockets on the link (`/ws/s/<token>/`,
opened by --clients processes of their own, so that reading frames does not load the one
that times them), then the owner's socket sends a message and every socket reads frames
until the reply is complete. Reported per run:

  p50/p99 delay  from the mock writing a token to the frame that first shows it, over every
                 viewer and token
  in order       viewers whose frames never went back and whose final frame holds every
                 token in order
  CPU/frame      the worker's CPU time (user+system) from the send to the last viewer's
                 final frame, divided by the frames delivered to all sockets (owner's too);
                 and what each viewer frame added beyond the owner-only run

First the owner alone (N=0), then N=--viewers, then the --sweep counts while the p99 stays
under 250 ms with every viewer in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_chat_ws import (
    MODEL,
    TOKEN,
    Chat,
    _mock_process,
    cpu_seconds,
    delays,
    make_rows,
    set_up,
    start_worker,
    steal_seconds,
)
from harness import quiet_collector

GOAL_MS = 250


# -- a socket reading one reply ------------------------------------------------------------


async def read_reply(ws: object, chat: Reading, tokens: int) -> None:
    """Frames until the reply is complete: (time, highest token shown) per frame that shows
    a new one, and the final frame's tokens. A frame showing less than before is an error."""
    seen = -1
    try:
        async with asyncio.timeout(tokens * 0.02 + 60):
            while True:
                frame = await ws.recv()  # type: ignore[attr-defined]
                now = time.monotonic()
                chat.frames_received += 1
                if "status-complete" in frame or "status-error" in frame:
                    if "status-error" in frame:
                        chat.error = "error"
                    body = frame.split("-body", 1)[1]
                    chat.final = [int(i) for i in TOKEN.findall(body)]
                    chat.frames.append((now, tokens - 1))
                    return
                found = TOKEN.findall(frame)
                if found:
                    top = max(int(i) for i in found)
                    if top > seen:
                        seen = top
                        chat.frames.append((now, top))
    except Exception as exc:
        chat.error = repr(exc)


@dataclass
class Reading(Chat):
    """One socket's reading of the reply (`Chat`), and how many frames it got in all."""

    frames_received: int = 0


# -- viewer processes --------------------------------------------------------------------


def _viewers_process(conn: object, url: str, origin: str, count: int, tokens: int) -> None:
    with quiet_collector():
        asyncio.run(_watch(conn, url, origin, count, tokens))


async def _watch(conn: object, url: str, origin: str, count: int, tokens: int) -> None:
    import websockets

    async def open_one() -> object:
        return await websockets.connect(
            url, additional_headers={"Origin": origin}, max_size=2**24, open_timeout=60
        )

    sockets = []
    for start in range(0, count, 50):  # in batches: a burst of handshakes is not the point
        sockets += await asyncio.gather(*(open_one() for _ in range(start, min(count, start + 50))))
    chats = [Reading(key=f"viewer-{i}") for i in range(count)]
    readers = [
        asyncio.ensure_future(read_reply(ws, chat, tokens))
        for ws, chat in zip(sockets, chats, strict=True)
    ]
    await asyncio.sleep(0.5)  # every socket has joined its groups
    conn.send("ready")  # type: ignore[attr-defined]
    await asyncio.gather(*readers)
    conn.send(  # type: ignore[attr-defined]
        [(c.frames, c.final, c.error, c.frames_received) for c in chats]
    )
    await asyncio.gather(*(ws.close() for ws in sockets))  # type: ignore[attr-defined]


# -- the owner, and a run ------------------------------------------------------------------


async def owner_turn(url: str, cookie: str, key: str, chat: Reading, tokens: int) -> None:
    import websockets

    origin = "http://" + url.split("://", 1)[1].split("/", 1)[0]
    headers = {"Origin": origin, "Cookie": f"sessionid={cookie}"}
    async with websockets.connect(url, additional_headers=headers, max_size=2**24) as ws:
        await ws.send(json.dumps({"action": "send", "content": key, "model": MODEL}))
        await read_reply(ws, chat, tokens)


def live_link(conversation_id: int) -> str:
    from conversations import shares
    from conversations.models import Conversation, Share

    _, token = shares.create(
        None,
        Conversation.objects.get(pk=conversation_id),
        visibility=Share.Visibility.ANYONE,
        mode=Share.Mode.LIVE,
        expires_at=None,
        include_system_prompt=False,
    )
    return token


def run(port: int, pid: int, mock: object, viewers: int, clients: int, tokens: int) -> dict:
    cookie, (conversation_id,) = make_rows(1)
    token = live_link(conversation_id)
    base = f"ws://127.0.0.1:{port}"
    origin = f"http://127.0.0.1:{port}"
    key = f"share-{viewers}-{time.monotonic_ns()}"
    counts = [viewers // clients + (1 if i < viewers % clients else 0) for i in range(clients)]
    pipes, processes = [], []
    for count in (c for c in counts if c):
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.Process(
            target=_viewers_process, args=(child, f"{base}/ws/s/{token}/", origin, count, tokens)
        )
        process.start()
        pipes.append(parent)
        processes.append(process)
    for parent in pipes:
        assert parent.recv() == "ready"

    load = os.getloadavg()[0]
    owner = Reading(key=key)
    cpu_before, steal_before = cpu_seconds(pid), steal_seconds()
    with quiet_collector():
        asyncio.run(owner_turn(f"{base}/ws/c/{conversation_id}/", cookie, key, owner, tokens))
    watched = [result for parent in pipes for result in parent.recv()]
    cpu = cpu_seconds(pid) - cpu_before
    steal = steal_seconds() - steal_before
    for process in processes:
        process.join(10)
    mock.send("dump")  # type: ignore[attr-defined]
    times = mock.recv().get(key, [])  # type: ignore[attr-defined]

    all_delays: list[float] = []
    in_order = 0
    errors = []
    frames = owner.frames_received
    for shown, final, error, received in watched:
        all_delays += delays(Chat("", shown, final, error), times)
        frames += received
        if error:
            errors.append(error)
        elif final == list(range(tokens)) and len(times) == tokens:
            in_order += 1
    source = sorted(all_delays if watched else delays(owner, times))

    def p(q: float) -> float:
        return source[min(len(source) - 1, int(q * len(source)))] * 1000 if source else float("nan")

    result = {
        "viewers": viewers,
        "p50": p(0.50),
        "p99": p(0.99),
        "in_order": in_order,
        "owner_whole": owner.final == list(range(tokens)),
        "frames": frames,
        "cpu": cpu,
        "cpu_per_frame_us": cpu / max(1, frames) * 1e6,
        "errors": errors[:3],
    }
    print(
        f"viewers={viewers:<5} p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms  "
        f"in order {in_order}/{viewers}  owner whole {result['owner_whole']}  "
        f"frames {frames:6d}  CPU {cpu:5.2f} s = {result['cpu_per_frame_us']:5.1f} µs/frame"
        f"  (load before {load:.2f}, steal {steal:.2f} s)"
        + (f"  errors: {errors[:2]}" if errors else ""),
        flush=True,
    )
    return result


def marginal_us(alone: dict, watched: dict) -> float:
    """The worker's CPU per frame sent to a viewer: beyond what the owner alone cost."""
    extra_frames = max(1, watched["frames"] - alone["frames"])
    return (watched["cpu"] - alone["cpu"]) / extra_frames * 1e6


def meets_goal(result: dict) -> bool:
    return (
        result["p99"] < GOAL_MS
        and result["in_order"] == result["viewers"]
        and result["owner_whole"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300, help="tokens in the reply")
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--sweep", default="400,600,800,1000", help="more viewer counts")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    parent, child = multiprocessing.Pipe()
    mock = multiprocessing.Process(target=_mock_process, args=(child, args.tokens, 0.02))
    mock.start()
    mock_url = parent.recv()
    redis_process = set_up(data_dir)
    from llm.models import Connection

    Connection.objects.update_or_create(
        name="mock", defaults={"kind": "ollama", "base_url": mock_url}
    )
    daphne, port = start_worker(
        "chatsite.asgi:application", "bench_settings_pubsub", data_dir, mock_url
    )
    try:
        alone = run(port, daphne.pid, parent, 0, args.clients, args.tokens)
        watched = run(port, daphne.pid, parent, args.viewers, args.clients, args.tokens)
        print(
            f"CPU per delivered frame: {watched['cpu_per_frame_us']:.1f} µs with "
            f"{args.viewers} viewers, {alone['cpu_per_frame_us']:.1f} µs for the owner alone "
            f"({watched['cpu_per_frame_us'] / alone['cpu_per_frame_us']:.2f}x); each viewer "
            f"frame added {marginal_us(alone, watched):.1f} µs"
        )
        best = args.viewers if meets_goal(watched) else 0
        for n in [int(n) for n in args.sweep.split(",") if n]:
            result = run(port, daphne.pid, parent, n, args.clients, args.tokens)
            print(f"  each viewer frame added {marginal_us(alone, result):.1f} µs", flush=True)
            if not meets_goal(result):
                break
            best = n
        print(f"largest viewer count meeting p99 < {GOAL_MS} ms with every token in order: {best}")
    finally:
        daphne.terminate()
        daphne.wait()
        parent.send("quit")
        mock.join(5)
        if redis_process is not None:
            from chatsite.embedded import stop

            stop(redis_process)


if __name__ == "__main__":
    sys.exit(main())
