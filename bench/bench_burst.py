"""Bursts of new API streams on one worker: time to first token when N clients start at once.

Run from the repository root: `.venv/bin/python bench/bench_burst.py` (`--help` for options).

It sets up Django on a temporary DATA_DIR (SQLite, migrated; an embedded Redis unless
REDIS_URL is set), starts the mock upstream in its own process (50 tokens 20 ms apart by
default, so a stream lasts a second and the streams of a burst overlap as real ones do), one
Ollama connection to it, admins (no quota limits) with a key each, and a Daphne worker
started the way the product's launcher starts it (`chatsite.serve` listening on
`chatsite.embedded.daphne_endpoint`; the catalog cached for the whole run unless a scenario
drops it). Then, in one run, bursts of `--clients` streams started at once:

  direct        the mock's own /api/chat: the baseline, measured in the same run
  first         the worker's first burst after start: keys never used, catalog cold
  warm          keys cached, catalog cached (several rounds, alternating with direct)
  new keys      keys never used (a key's first use reads the database), catalog cached
  cold catalog  keys cached, the cached catalog dropped just before
  reused        every client sends on a keep-alive connection it opened earlier
  openai        /v1/chat/completions, warm, beside the mock's own /v1 endpoint

Each client is a new TCP connection, as a separate program would open (plain asyncio
sockets, HTTP/1.1 written by hand: the load generator adds next to nothing per client).
Per burst: TTFT p50/p95/p99/max (from the client's connect to its first token), streams
that failed (non-200, an error line, no final line), CPU seconds of each process.

`--before DIR` also starts a worker from another copy of the code (the same database, Redis
and mock) and runs every burst on both, one after the other, so that whatever else the
machine does weighs on both alike: a before/after comparison from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, quiet_collector, set_up_django, start_daphne, stop

MODEL = "llama3.2:latest"
PREFIX = "mock"
TOKENS = 50
GOAL_P95_MS = 1000.0


@dataclass(frozen=True)
class Door:
    """How one API door is called and how its stream shows a token, its end, an error."""

    path: str
    done: tuple[bytes, ...]
    token: bytes = b"tok"  # the mock's words are tok0, tok1, ...
    error: bytes = b'"error"'

    def body(self, model: str) -> bytes:
        message = {"role": "user", "content": "hi"}
        return json.dumps({"model": model, "messages": [message], "stream": True}).encode()


OLLAMA = Door("/api/chat", (b'"done":true', b'"done": true'))
OPENAI = Door("/v1/chat/completions", (b"data: [DONE]",))


@dataclass
class Result:
    """What one client saw (perf_counter seconds)."""

    started: float = 0.0
    connected: float = 0.0
    headers: float = 0.0
    first_token: float = 0.0
    ended: float = 0.0
    status: int = 0
    error: str = ""
    local_port: int = 0  # joins a client to a worker-side trace of it

    @property
    def ttft(self) -> float:
        return self.first_token - self.started


# -- the load generator: HTTP/1.1 on plain asyncio streams -------------------------------


class Client:
    """One program's connection to a server: opened on first use, kept only if asked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def stream(self, door: Door, model: str, secret: str, keep: bool) -> Result:
        """POST one streaming request and read it to its end."""
        result = Result(started=time.perf_counter())
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            result.connected = time.perf_counter()
            result.local_port = self.writer.get_extra_info("sockname")[1]
            await self._exchange(door, model, secret, keep, result)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        if not keep or result.error:
            self.close()
        return result

    async def _exchange(
        self, door: Door, model: str, secret: str, keep: bool, result: Result
    ) -> None:
        assert self.reader is not None and self.writer is not None
        body = door.body(model)
        head = (
            f"POST {door.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("" if keep else "Connection: close\r\n") + "\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed before answering")
        result.status = int(status_line.split()[1])
        chunked, length = False, -1
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin1").partition(":")
            if name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name.lower() == "content-length":
                length = int(value)
        result.headers = time.perf_counter()
        seen = bytearray()
        async for piece in _body(self.reader, chunked, length):
            if not result.first_token and door.token in piece:
                result.first_token = time.perf_counter()
            seen += piece
        result.ended = time.perf_counter()
        result.error = _verdict(door, result, bytes(seen))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _verdict(door: Door, result: Result, body: bytes) -> str:
    """What went wrong with a stream, or ""."""
    if result.status != 200:
        return f"HTTP {result.status}: {body[:200]!r}"
    if door.error in body:
        return f"error line: {body[-200:]!r}"
    if not any(marker in body for marker in door.done):
        return "no final line"
    if not result.first_token:
        return "no token"
    return ""


async def _body(reader: asyncio.StreamReader, chunked: bool, length: int) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive (chunked, by length, or up to EOF)."""
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            yield await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    elif length >= 0:
        yield await reader.readexactly(length)
    else:
        while piece := await reader.read(65536):
            yield piece


async def burst(
    clients: list[Client], door: Door, model: str, secrets: list[str], keep: bool = False
) -> list[Result]:
    """Every client starts its stream at once; client i uses secrets[i % len(secrets)]."""
    return await asyncio.gather(
        *(
            client.stream(door, model, secrets[i % len(secrets)], keep)
            for i, client in enumerate(clients)
        )
    )


async def open_clients(port: int, count: int, model: str, secret: str) -> list[Client]:
    """Clients whose connection is open and has carried one stream already (keep-alive)."""
    clients = [Client(port) for _ in range(count)]
    for start in range(0, count, 25):  # a few at a time: only the connections are to be ready
        await asyncio.gather(
            *(client.stream(OLLAMA, model, secret, keep=True) for client in clients[start:][:25])
        )
    return clients


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Burst:
    scenario: str
    target: str  # "direct", or the worker's name
    results: list[Result]
    cpu: dict[str, float] = field(default_factory=dict)
    load: float = 0.0

    def ttfts_ms(self) -> list[float]:
        return sorted(r.ttft * 1000 for r in self.results if not r.error and r.first_token)

    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]

    def p(self, q: float) -> float:
        return pct(self.ttfts_ms(), q)


def pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    port: int


class World:
    """The mock, the workers and the rows behind them, for one run."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.data_dir = data_dir
        self.processes: list[subprocess.Popen] = []
        self.workers: list[Worker] = []
        self.issued = 0
        self.redis_process = set_up_django(data_dir)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        args = self.args
        self.mock = subprocess.Popen(
            [sys.executable, "-m", "tests.mock_upstream", "--tokens", str(args.tokens),
             "--delay", str(args.delay)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.processes.append(self.mock)
        assert self.mock.stdout is not None
        mock_url = self.mock.stdout.readline().strip()
        self.mock_port = int(mock_url.rsplit(":", 1)[1])
        from llm.models import Connection

        Connection.objects.create(name=PREFIX, base_url=mock_url, prefix=f"{PREFIX}/")
        copies = [("before", Path(args.before).resolve())] if args.before else []
        for name, code in [*copies, ("after" if args.before else "worker", ROOT)]:
            env = {
                "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
                # Cached for the whole run, so that a "warm" burst is never the first after
                # the product's 30 s expiry by chance: "cold catalog" measures that case.
                "LLM_CATALOG_TTL": "3600",
            }
            log = self.data_dir / f"daphne-{name}.log"
            process, port = start_daphne(args.application, env=env, log_path=log, cwd=code)
            self.processes.append(process)
            self.workers.append(Worker(name, process, port))

    def new_secrets(self, count: int) -> list[str]:
        """`count` keys never used yet, each of its own admin (no quota limits)."""
        from accounts.models import ApiKey, User

        secrets = []
        for _ in range(count):
            self.issued += 1
            user = User(username=f"program{self.issued}", role=User.Role.ADMIN)
            user.set_unusable_password()  # no password hashing: it would take minutes
            user.save()
            secrets.append(ApiKey.issue(user, "burst")[1])
        return secrets

    def drop_catalog(self) -> None:
        from llm import catalog

        catalog.invalidate()

    def cpu(self, worker: Worker | None) -> dict[str, float]:
        """CPU seconds so far of the processes that share the machine's cores in a burst."""
        pids = {"mock": self.mock.pid, "load": os.getpid()}
        if worker is not None:
            pids["worker"] = worker.process.pid
        if self.redis_process is not None:
            pids["redis"] = self.redis_process.pid
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    async def run(
        self,
        scenario: str,
        worker: Worker | None,
        secrets: list[str],
        *,
        door: Door = OLLAMA,
        reuse: list[Client] | None = None,
    ) -> Burst:
        """One burst against `worker` (None: the mock itself); printed as it ends."""
        port = worker.port if worker else self.mock_port
        model = f"{PREFIX}/{MODEL}" if worker else MODEL
        clients = reuse or [Client(port) for _ in range(self.args.clients)]
        load = os.getloadavg()[0]
        profiler = self.profile(f"{scenario}-{worker.name}") if worker else None
        before = self.cpu(worker)
        results = await burst(clients, door, model, secrets, keep=reuse is not None)
        cpu = {name: after - before[name] for name, after in self.cpu(worker).items()}
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait()
        outcome = Burst(scenario, worker.name if worker else "direct", results, cpu, load)
        show(outcome)
        if self.args.dump:
            record = {"scenario": scenario, "target": outcome.target}
            with Path(self.args.dump).open("a") as out:  # noqa: ASYNC230 (between bursts)
                out.write(json.dumps({**record, "results": [vars(r) for r in results]}) + "\n")
        await asyncio.sleep(self.args.pause)
        return outcome

    def profile(self, label: str) -> subprocess.Popen | None:
        """py-spy sampling the worker through one burst (`--profile PREFIX`), if asked."""
        if not self.args.profile:
            return None
        worker = next(w for w in self.workers if label.endswith(w.name))
        name = f"{self.args.profile}-{label.replace(' ', '_').replace('#', '')}.txt"
        profiler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(worker.process.pid), "--format", "raw", "--output", name, "--rate", "250",
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached
        return profiler

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        stop(self.redis_process)  # type: ignore[arg-type]


def show(outcome: Burst) -> None:
    ttfts = outcome.ttfts_ms()
    errors = outcome.errors()
    cpu = " ".join(f"{name} {value:.2f}" for name, value in outcome.cpu.items())
    print(
        f"{outcome.scenario:<14} {outcome.target:<7} TTFT p50 {outcome.p(0.5):7.1f}"
        f"  p95 {outcome.p(0.95):7.1f}  p99 {outcome.p(0.99):7.1f}"
        f"  max {ttfts[-1] if ttfts else float('nan'):7.1f} ms  errors {len(errors)}"
        f"  CPU s: {cpu}  (load {outcome.load:.2f})"
        + (f"\n    first errors: {errors[:3]}" if errors else ""),
        flush=True,
    )


async def measure(world: World, secrets: list[str], fresh: dict) -> list[Burst]:
    """The bursts of one run, in order (see the module's docstring). `secrets`: the keys
    of the warm bursts; `fresh`: by (scenario, worker name), keys nobody used yet."""
    args = world.args
    workers = world.workers
    bursts = [await world.run("direct", None, secrets)]
    for worker in workers:  # each worker's first burst, on keys nobody used yet
        world.drop_catalog()
        bursts.append(await world.run("first", worker, fresh[("first", worker.name)]))
    for worker in workers:  # the shared keys, cached
        await world.run("warm-up", worker, secrets)
    for i in range(args.rounds):
        bursts.append(await world.run("direct", None, secrets))
        order = workers if i % 2 == 0 else workers[::-1]
        for worker in order:
            bursts.append(await world.run("warm", worker, secrets))
    for worker in workers:
        bursts.append(await world.run("new keys", worker, fresh[("new keys", worker.name)]))
    for worker in workers:
        world.drop_catalog()
        bursts.append(await world.run("cold catalog", worker, secrets))
    model = f"{PREFIX}/{MODEL}"
    for worker in workers:
        reused = await open_clients(worker.port, args.clients, model, secrets[0])
        bursts.append(await world.run("reused conns", worker, secrets, reuse=reused))
        for client in reused:
            client.close()
    if not args.no_openai:
        bursts.append(await world.run("direct /v1", None, secrets, door=OPENAI))
        for worker in workers:
            bursts.append(await world.run("openai", worker, secrets, door=OPENAI))
    return bursts


def summary(bursts: list[Burst], workers: list[Worker]) -> None:
    """Per scenario and target: TTFT p50/p95/max over its bursts (ranges over rounds)."""
    print(f"\nTTFT of {len(bursts[0].results)} streams started at once, ms (p95 goal < "
          f"{GOAL_P95_MS:.0f}); ranges are over rounds")  # fmt: skip
    names = ["direct"] + [w.name for w in workers]
    print(f"{'scenario':<14}" + "".join(f"{name + ' p50 / p95 / max':>34}" for name in names))
    scenarios = list(dict.fromkeys(b.scenario for b in bursts))
    for scenario in scenarios:
        cells = []
        for name in names:
            mine = [b for b in bursts if b.scenario == scenario and b.target == name]
            if not mine:
                cells.append(f"{'':>34}")
                continue
            p50, p95 = _span([b.p(0.5) for b in mine]), _span([b.p(0.95) for b in mine])
            top = _span([b.p(1.0) for b in mine])
            failed = sum(len(b.errors()) for b in mine)
            cells.append(f"{p50 + ' / ' + p95 + ' / ' + top + ('!' if failed else ''):>34}")
        print(f"{scenario:<14}" + "".join(cells))


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=150, help="streams per burst")
    parser.add_argument("--rounds", type=int, default=3, help="warm bursts (with direct ones)")
    parser.add_argument(
        "--keys", type=int, default=150, help="distinct keys (owners) among a burst's clients"
    )
    parser.add_argument("--tokens", type=int, default=TOKENS, help="tokens per stream")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between bursts")
    parser.add_argument("--no-openai", action="store_true", help="skip the /v1 bursts")
    parser.add_argument("--before", default="", help="another copy of the code to compare")
    parser.add_argument("--profile", default="", help="py-spy each API burst to PREFIX-label.txt")
    parser.add_argument("--dump", default="", help="append every client's timestamps to FILE")
    parser.add_argument(
        "--application", default="chatsite.asgi:application", help="the worker's ASGI app"
    )
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-bench-burst-"))
    world = None
    try:
        world = World(args, data_dir)
        workers = ", ".join(f"{w.name} pid {w.process.pid}" for w in world.workers)
        print(f"{args.clients} new clients per burst, {args.keys} keys, {args.tokens} tokens "
              f"{args.delay * 1000:g} ms apart; {workers}; {os.cpu_count()} CPUs; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        secrets = world.new_secrets(args.keys)
        fresh = {(scenario, w.name): world.new_secrets(args.keys)
                 for scenario in ("first", "new keys") for w in world.workers}  # fmt: skip
        with quiet_collector():
            bursts = asyncio.run(measure(world, secrets, fresh))
    finally:
        if world is not None:
            world.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    summary(bursts, world.workers)
    failed = sum(len(b.errors()) for b in bursts)
    print(f"failed streams: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
