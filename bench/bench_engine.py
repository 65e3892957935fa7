"""Engine throughput: the mock's raw rate vs. the same stream through `llm.stream_chat`.

Run from the repository root: `.venv/bin/python bench/bench_engine.py [--tokens N]`.
It sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), starts the mock upstream in its own processes (so it does not share this
process's GIL with the client being measured), and for each protocol measures:

  raw      a plain httpx stream reading the mock's lines (the ceiling for one stream)
  engine   the same reply through stream_chat (parsing, events, catalog lookup)
  concurrent  C concurrent stream_chat calls, aggregate events/s
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, set_up_django, stop

HI = [{"role": "user", "content": "hi"}]
PROTOCOLS = {"ollama": "llama3.2:latest", "openai": "gpt-4o-mini"}


def start_mock(tokens: int) -> tuple[subprocess.Popen[str], str]:
    """A mock upstream process answering every request with `tokens` tokens; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mock_upstream", "--tokens", str(tokens)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def create_connections(url: str, prefix: str) -> None:
    """One connection per protocol, both served by the mock at `url`."""
    from llm.models import Connection

    for kind, base_url in (("ollama", url), ("openai", f"{url}/v1")):
        Connection.objects.create(
            name=f"{prefix}{kind}", kind=kind, base_url=base_url, prefix=prefix
        )


async def raw_rate(url: str, protocol: str, tokens: int) -> float:
    """Tokens/s read by a bare httpx client (one line per token)."""
    import httpx

    model = PROTOCOLS[protocol]
    if protocol == "ollama":
        url, body = f"{url}/api/chat", {"model": model, "messages": HI}
    else:
        url = f"{url}/v1/chat/completions"
        body = {"model": model, "messages": HI, "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        lines = 0
        async with client.stream("POST", url, json=body) as response:
            async for line in response.aiter_lines():
                lines += bool(line)
        elapsed = time.perf_counter() - started
    assert lines >= tokens, f"raw {protocol}: {lines} lines for {tokens} tokens"
    return tokens / elapsed


async def engine_rate(protocol: str, tokens: int) -> float:
    """Tokens/s as Delta events out of stream_chat."""
    import llm
    from llm.events import Delta

    started = time.perf_counter()
    deltas = 0
    async for event in llm.stream_chat(PROTOCOLS[protocol], HI):
        deltas += isinstance(event, Delta)
    elapsed = time.perf_counter() - started
    assert deltas == tokens, f"engine {protocol}: {deltas} deltas for {tokens} tokens"
    return tokens / elapsed


async def concurrent_rate(protocol: str, streams: int, tokens: int) -> float:
    """Aggregate tokens/s of `streams` stream_chat calls at once (the "many/" mock)."""
    import llm

    async def one() -> int:
        return sum([1 async for _ in llm.stream_chat(f"many/{PROTOCOLS[protocol]}", HI)]) - 1

    started = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(streams)))
    elapsed = time.perf_counter() - started
    assert sum(counts) == streams * tokens
    return streams * tokens / elapsed


async def measure(url: str, tokens: int, streams: int, per_stream: int, repeat: int) -> list:
    from llm import catalog

    await catalog.list_models()  # warm the catalog and the connection pool
    rows = []
    for protocol in PROTOCOLS:
        raw = max([await raw_rate(url, protocol, tokens) for _ in range(repeat)])
        engine = max([await engine_rate(protocol, tokens) for _ in range(repeat)])
        together = await concurrent_rate(protocol, streams, per_stream)
        rows.append((protocol, raw, engine, together))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens per reply")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams")
    parser.add_argument(
        "--stream-tokens", type=int, default=200, help="tokens per concurrent stream"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    processes: list = []
    try:
        processes.append(set_up_django(data_dir))
        long_mock, url = start_mock(args.tokens)
        short_mock, short_url = start_mock(args.stream_tokens)
        processes += [long_mock, short_mock]
        create_connections(url, "")
        create_connections(short_url, "many/")
        rows = asyncio.run(measure(url, args.tokens, args.streams, args.stream_tokens, args.repeat))
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)
    per_stream = args.stream_tokens
    print(
        f"tokens per reply: {args.tokens:,} (best of {args.repeat}); "
        f"concurrent: {args.streams} x {per_stream:,} tokens"
    )
    print(
        f"{'protocol':<9} {'raw httpx tok/s':>16} {'stream_chat tok/s':>18} {'ratio':>6} "
        f"{'concurrent tok/s':>17}"
    )
    for protocol, raw, engine, together in rows:
        print(
            f"{protocol:<9} {raw:>16,.0f} {engine:>18,.0f} {engine / raw:>6.2f} {together:>17,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
