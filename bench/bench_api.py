"""The platform API's overhead: the mock upstream called directly vs. through /api/chat.

Run from the repository root: `.venv/bin/python bench/bench_api.py`.
It sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), starts three mock upstreams in their own processes (5 instant tokens;
20,000 tokens at full speed; 100 tokens 20 ms apart), one Connection per mock, an admin
with a key (admins have no quota limits), and a real Daphne; then, in one run, measures:

  ttft      time to the first content line, p50 over sequential requests
  one stream  tokens/s of one full-speed stream (first to last token)
  100 streams  100 concurrent paced streams started at once: p99 gap between tokens,
              p50 time to first token, streams that did not end with done:true

Direct and API requests are read the same way (NDJSON lines, no JSON parsing per line).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import ROOT, quiet_collector, set_up_django, start_daphne, stop

MODEL = "llama3.2:latest"
HI = [{"role": "user", "content": "hi"}]
MOCKS = {  # prefix -> mock arguments
    "ttft": ["--tokens", "5"],
    "fast": ["--tokens", "20000"],
    "paced": ["--tokens", "100", "--delay", "0.02"],
}


@dataclass
class Stream:
    """What the client saw of one stream (perf_counter seconds)."""

    started: float
    token_times: list[float] = field(default_factory=list)
    done: bool = False

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.started

    @property
    def gaps(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def rate(self) -> float:
        span = self.token_times[-1] - self.token_times[0]
        return (len(self.token_times) - 1) / span if span > 0 else 0.0


def start_mock(arguments: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mock_upstream", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def create_rows(mock_urls: dict[str, str]) -> str:
    """One Connection per mock (prefixed), an admin and a key; the key's secret."""
    from accounts.models import ApiKey, User
    from llm.models import Connection

    for prefix, url in mock_urls.items():
        Connection.objects.create(name=prefix, base_url=url, prefix=f"{prefix}/")
    admin = User.objects.create_user("bench", password="x", role=User.Role.ADMIN)
    return ApiKey.issue(admin, "bench")[1]


async def one_stream(client: httpx.AsyncClient, url: str, model: str, headers: dict) -> Stream:
    """Stream /api/chat and note when each content line arrived."""
    stream = Stream(started=time.perf_counter())
    body = {"model": model, "messages": HI}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if '"done":false' in line or '"done": false' in line:
                stream.token_times.append(time.perf_counter())
            elif '"done":true' in line or '"done": true' in line:
                stream.done = True
    return stream


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    return httpx.AsyncClient(timeout=60, limits=limits)


async def measure(mocks: dict[str, str], api_url: str, secret: str, rounds: int) -> dict:
    """Each phase gets fresh clients: one left holding a hundred idle keep-alive connections
    slowed whichever target was measured after it by several milliseconds a request."""
    auth = {"Authorization": f"Bearer {secret}"}

    def direct(prefix: str) -> tuple[str, str, dict]:
        return f"{mocks[prefix]}/api/chat", MODEL, {}

    def api(prefix: str) -> tuple[str, str, dict]:
        return f"{api_url}/api/chat", f"{prefix}/{MODEL}", auth

    targets = (("direct", direct), ("api", api))
    results: dict = {}
    async with new_client() as client:
        for prefix in MOCKS:  # warm up: catalog, pools, code paths
            for _, target in targets:
                await one_stream(client, *target(prefix))
        # Alternate the two, so whatever else the machine does weighs on both alike.
        ttfts: dict[str, list[float]] = {"direct": [], "api": []}
        for _ in range(rounds):
            for name, target in targets:
                ttfts[name].append((await one_stream(client, *target("ttft"))).ttft)
    for name, _ in targets:
        results[("ttft_p50_ms", name)] = statistics.median(ttfts[name]) * 1000

    for name, target in targets:
        async with new_client() as client:
            fast = await one_stream(client, *target("fast"))
        results[("one_stream_tok_s", name)] = fast.rate

    for name, target in targets:
        async with new_client() as client:
            streams = await asyncio.gather(
                *(one_stream(client, *target("paced")) for _ in range(100))
            )
        complete = [s for s in streams if s.done and len(s.token_times) == 100]
        gaps = [gap for s in complete for gap in s.gaps]
        results[("c100_gap_p99_ms", name)] = pct(gaps, 0.99) * 1000 if gaps else float("nan")
        results[("c100_ttft_p50_ms", name)] = (
            statistics.median(s.ttft for s in complete) * 1000 if complete else float("nan")
        )
        results[("c100_lost", name)] = 100 - len(complete)
    return results


def report(results: dict) -> None:
    rows = [
        ("ttft_p50_ms", "TTFT p50 (ms), sequential", "added <= 3 ms"),
        ("one_stream_tok_s", "one stream, tokens/s", "API >= 25% of direct"),
        ("c100_gap_p99_ms", "100 streams: token gap p99 (ms)", "within 10 ms"),
        ("c100_ttft_p50_ms", "100 streams: TTFT p50 (ms)", "within 150 ms"),
        ("c100_lost", "100 streams: lost", "0"),
    ]
    print(f"{'measure':36} {'direct':>12} {'API':>12} {'API - direct':>14}  target")
    for key, label, target in rows:
        direct, api = results[(key, "direct")], results[(key, "api")]
        if key == "one_stream_tok_s":
            delta = f"{api / direct:.0%} of direct" if direct else "n/a"
        else:
            delta = f"{api - direct:+.2f}"
        print(f"{label:36} {direct:12.2f} {api:12.2f} {delta:>14}  {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="sequential TTFT requests")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-api-"))
    processes: list[subprocess.Popen] = []
    redis_process = None
    try:
        redis_process = set_up_django(data_dir)
        mocks = {}
        for prefix, arguments in MOCKS.items():
            process, url = start_mock(arguments)
            processes.append(process)
            mocks[prefix] = url
        secret = create_rows(mocks)
        daphne, port = start_daphne()
        api_url = f"http://127.0.0.1:{port}"
        processes.append(daphne)
        with quiet_collector():
            results = asyncio.run(measure(mocks, api_url, secret, args.rounds))
        report(results)
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        stop(redis_process)  # type: ignore[arg-type]
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
