"""A scripted Ollama + OpenAI-compatible server on a loopback port, for tests and benchmarks.

It runs its own asyncio loop in a background thread, so sync tests, async tests and a
separate Daphne process can all talk to it over real sockets:

    with MockUpstream() as mock:
        mock.script(tokens=3, delay=0.01)
        ...  # point a Connection at mock.url (Ollama) or mock.openai_url (OpenAI, "/v1")
        assert mock.requests[-1].body["model"] == "llama3.2:latest"

HTTP/1.1 is written by hand on asyncio streams (keep-alive, chunked bodies) so that the
server is fast, dependency-free and lets a test cut a connection at an exact token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

OLLAMA_MODELS = ["llama3.2:latest", "qwen3:8b"]
OPENAI_MODELS = ["gpt-4o-mini", "gpt-4.1"]
VERSION = "0.12.3"
CONTEXT_LENGTH = 131072  # every model's "llama.context_length" in /api/show
THINKING_MARKERS = ("qwen3", "deepseek-r1", "gpt-oss", "think")  # names of models that think
CREATED_AT = "2025-01-01T00:00:00.123456789Z"
CREATED = 1735689600
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


@dataclass
class Script:
    """What the mock answers to a generation request (see `MockUpstream.script`)."""

    tokens: int = 5  # words "tok0 tok1 ..." when `text` is None
    text: str | None = None  # streamed split into words (whitespace kept with each word)
    delay: float = 0.0  # seconds between tokens
    ttft: float = 0.0  # seconds before the response starts (headers included)
    thinking: str | None = None  # streamed word by word before the content
    think_delay: float = 0.0  # seconds between thinking words
    tool_calls: list[dict] | None = None  # [{"name", "arguments": dict|str, "id"?}]
    status: int | None = None  # reply with this HTTP error instead of generating
    error: str = "mock failure"  # message of `status`, `error_after` and OpenAI error events
    error_after: int | None = None  # send an in-band error after this many tokens
    cut_after: int | None = None  # drop the connection after this many tokens
    heartbeat: bool = False  # ": ping" SSE comment / blank NDJSON line before each token
    crlf: bool = False  # SSE lines end with CRLF and carry "event: message" lines
    done_reason: str = "stop"
    prompt_tokens: int = 10
    report_usage: bool = True  # Ollama metrics / OpenAI usage chunk
    reasoning_field: str = "reasoning"  # OpenAI delta field for thinking
    context: list[int] | None = None  # generate's final context (default [1, 2, 3])
    logprobs: bool = True  # answer token logprobs when the request asks for them
    # When set: call the tool the request forces (OpenAI's tool_choice naming a function),
    # else the first tool offered, with these arguments, as a model would.
    call_offered_tool: dict | None = None

    def pieces(self) -> list[str]:
        """The content tokens, in order."""
        if self.text is None:
            return [f"tok{i} " if i < self.tokens - 1 else f"tok{i}" for i in range(self.tokens)]
        return re.findall(r"\s*\S+\s*", self.text) or ([self.text] if self.text else [])

    def thinking_pieces(self) -> list[str]:
        """The thinking tokens, in order."""
        return re.findall(r"\s*\S+\s*", self.thinking or "")


@dataclass
class Received:
    """One request the mock received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    raw: bytes = b""


@dataclass
class StreamRecord:
    """One generation response and what became of its connection."""

    path: str
    model: str
    started_at: float  # time.monotonic() when the request was read
    first_byte_at: float | None = None
    finished_at: float | None = None  # when the last byte was written (or the cut happened)
    tokens_sent: int = 0
    completed: bool = False  # the whole response was written
    cut_by_client: bool = False  # the client closed the connection before the end
    client_closed_at: float | None = None  # when the mock saw the client's close

    @property
    def rate(self) -> float:
        """Tokens per second written by the mock (0 until finished)."""
        if self.finished_at is None or self.first_byte_at is None:
            return 0.0
        return self.tokens_sent / max(self.finished_at - self.first_byte_at, 1e-9)


_TOKEN = None  # in a frame sequence: "the next frame is a token"
_TAIL = b""  # in a frame sequence: "the tokens are over; the closing frames follow"
_THOUGHT = b" "  # in a frame sequence: "a thinking word follows" (paced by think_delay)


class _Cut(Exception):
    """The script says: drop the connection now."""


class _Gone(Exception):
    """The client closed the connection."""


class MockUpstream:
    """A background-thread HTTP server speaking Ollama and OpenAI; a context manager."""

    def __init__(
        self,
        ollama_models: list[str] | None = None,
        openai_models: list[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.ollama_models = list(OLLAMA_MODELS if ollama_models is None else ollama_models)
        self.openai_models = list(OPENAI_MODELS if openai_models is None else openai_models)
        self.api_key = api_key  # required as a Bearer token on /v1/* when set
        # Models that refuse embeddings, as chat-only models do (Ollama answers 501).
        self.chat_only: set[str] = set()
        # When set: the JSON every embeddings request is answered with, as it stands.
        self.embed_answer: Any = None
        # Models whose /api/show fails (500), as a model with a broken manifest does.
        self.show_broken: set[str] = set()
        self.requests: list[Received] = []
        self.streams: list[StreamRecord] = []
        self.defaults = Script()
        self.per_model: dict[str, Script] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = threading.Condition()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL for an Ollama connection."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for an OpenAI-compatible connection (with the /v1 suffix)."""
        return f"{self.url}/v1"

    def start(self) -> MockUpstream:
        """Start serving on a free loopback port."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                # A model server's listener takes a burst of connects (Go's listens with
                # the kernel's somaxconn); asyncio's default backlog of 100 would not.
                asyncio.start_server(self._serve, "127.0.0.1", 0, limit=2**24, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="mock-upstream", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        """Close every connection and stop the thread."""
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> MockUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- controls ----------------------------------------------------------------------

    def script(self, model: str | None = None, **changes: Any) -> Script:
        """Set how later requests are answered: for every model, or for one `model`."""
        unknown = set(changes) - {f.name for f in fields(Script)}
        if unknown:
            raise TypeError(f"unknown script fields: {sorted(unknown)}")
        if model is None:
            self.defaults = replace(self.defaults, **changes)
            return self.defaults
        self.per_model[model] = replace(self.per_model.get(model, self.defaults), **changes)
        return self.per_model[model]

    def reset(self) -> None:
        """Forget scripts, requests and streams (the model lists and key stay)."""
        self.defaults = Script()
        self.per_model.clear()
        self.chat_only.clear()
        self.embed_answer = None
        self.show_broken.clear()
        self.requests.clear()
        self.streams.clear()

    def script_for(self, model: str) -> Script:
        """The script that answers `model`."""
        return self.per_model.get(model, self.defaults)

    # -- observation -------------------------------------------------------------------

    def wait_for_disconnect(self, within: float = 2.0) -> StreamRecord:
        """Block until the latest stream's connection was closed by the client; return it.

        Don't call this from the event loop the client runs on (its close would never
        happen); use `await mock.wait_for_disconnect_async()` there.
        """
        deadline = time.monotonic() + within
        with self._changed:
            while True:
                if self.streams and self.streams[-1].client_closed_at is not None:
                    return self.streams[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no client disconnect within {within} s")
                self._changed.wait(left)

    async def wait_for_disconnect_async(self, within: float = 2.0) -> StreamRecord:
        """`wait_for_disconnect` for async tests: lets the caller's loop keep running."""
        return await asyncio.to_thread(self.wait_for_disconnect, within)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- HTTP --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                keep_alive = await self._dispatch(request, reader, writer)
                if not keep_alive:
                    return
        except (_Cut, _Gone, ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # the mock is shutting down; asyncio's stream callback dislikes cancelled tasks
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = b""
        if "content-length" in headers:
            raw = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            raw = await self._read_chunked(reader)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = ValueError("invalid JSON")
        return Received(method, target.split("?", 1)[0], headers, body, raw)

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()

    async def _dispatch(
        self, request: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        route = (request.method, request.path)
        if request.path.startswith("/v1/") and not self._authorized(request):
            self._send_json(
                writer,
                401,
                _openai_error(
                    "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
            )
            return True
        if isinstance(request.body, ValueError):
            self._send_json(writer, 400, {"error": "invalid character in request body"})
            return True
        simple = {
            ("GET", "/"): lambda: "Ollama is running",
            ("GET", "/api/version"): lambda: {"version": VERSION},
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): lambda: {"models": []},
            ("GET", "/v1/models"): self._openai_models,
        }
        if route in simple:
            payload = simple[route]()
            if isinstance(payload, str):
                self._send(writer, 200, "text/plain; charset=utf-8", payload.encode())
            else:
                self._send_json(writer, 200, payload)
            return True
        embeddings = route in {("POST", "/api/embed"), ("POST", "/v1/embeddings")}
        if embeddings and self.embed_answer is not None:
            self._send_json(writer, 200, self.embed_answer)
            return True
        if route == ("POST", "/api/show"):
            self._show(request, writer)
            return True
        if route == ("POST", "/api/embed"):
            self._embed(request, writer)
            return True
        if route == ("POST", "/v1/embeddings"):
            self._openai_embed(request, writer)
            return True
        if route in {("POST", "/api/chat"), ("POST", "/api/generate")}:
            return await self._ollama_generation(request, reader, writer)
        if route == ("POST", "/v1/chat/completions"):
            return await self._openai_generation(request, reader, writer)
        self._send(writer, 404, "text/plain", b"404 page not found")
        return True

    def _authorized(self, request: Received) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get("authorization", "") == f"Bearer {self.api_key}"

    def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        extra: str = "",
    ) -> None:
        reason = REASONS.get(status, "Status")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )

    def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        self._send(writer, status, "application/json; charset=utf-8", json.dumps(payload).encode())

    # -- catalog endpoints -------------------------------------------------------------

    def _tags(self) -> dict:
        return {"models": [_tag(name) for name in self.ollama_models]}

    def _openai_models(self) -> dict:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": CREATED, "owned_by": "library"}
                for name in self.openai_models
            ],
        }

    def _knows(self, model: str) -> bool:
        return model in self.ollama_models or model in self.openai_models

    def _show(self, request: Received, writer: asyncio.StreamWriter) -> None:
        body = request.body or {}
        model = body.get("model") or body.get("name") or ""
        if not self._knows(model):
            self._send_json(writer, 404, {"error": f"model '{model}' not found"})
            return
        if model in self.show_broken:
            self._send_json(writer, 500, {"error": f"could not read the manifest of {model}"})
            return
        tag = _tag(model)
        self._send_json(
            writer,
            200,
            {
                "modelfile": f"FROM {model}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": tag["details"],
                "model_info": {
                    "general.architecture": "llama",
                    "llama.context_length": CONTEXT_LENGTH,
                },
                "capabilities": _capabilities(model),
                "modified_at": tag["modified_at"],
            },
        )

    def _embed(self, request: Received, writer: asyncio.StreamWriter) -> None:
        body = request.body or {}
        if not self._knows(body.get("model", "")):
            self._send_json(writer, 404, {"error": f"model '{body.get('model', '')}' not found"})
            return
        if body["model"] in self.chat_only:
            self._send_json(writer, 501, {"error": "this model does not support embeddings"})
            return
        inputs = body.get("input", "")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        vectors = [_vector(text) for text in inputs]
        self._send_json(
            writer,
            200,
            {
                "model": body["model"],
                "embeddings": vectors,
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": sum(len(t.split()) for t in inputs),
            },
        )

    def _openai_embed(self, request: Received, writer: asyncio.StreamWriter) -> None:
        body = request.body or {}
        model = body.get("model", "")
        if not self._knows(model):
            error = _openai_error(
                f"The model `{model}` does not exist", "invalid_request_error", "model_not_found"
            )
            self._send_json(writer, 404, error)
            return
        if model in self.chat_only:
            error = _openai_error(
                "This model does not support embeddings.", "invalid_request_error", None
            )
            self._send_json(writer, 400, error)
            return
        inputs = body.get("input", "")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        tokens = sum(len(text.split()) for text in inputs)
        data = [
            {"object": "embedding", "index": index, "embedding": _vector(text)}
            for index, text in enumerate(inputs)
        ]
        self._send_json(
            writer,
            200,
            {
                "object": "list",
                "data": data[::-1],  # out of order on purpose: clients sort by index
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- generation --------------------------------------------------------------------

    async def _ollama_generation(
        self, request: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        body = request.body
        if not isinstance(body, dict):
            self._send_json(writer, 400, {"error": "missing request body"})
            return True
        model = body.get("model") or ""
        if not model:
            self._send_json(writer, 400, {"error": "model is required"})
            return True
        if not self._knows(model):
            self._send_json(writer, 404, {"error": f"model '{model}' not found"})
            return True
        script = self.script_for(model)
        if script.status is not None:
            self._send_json(writer, script.status, {"error": script.error})
            return True
        chat = request.path == "/api/chat"
        stream = body.get("stream", True) is not False
        script = _calling_offered_tool(script, body)
        frames = _OllamaFrames(model, script, chat, raw=bool(body.get("raw")))
        frames.logprobs = _logprobs_asked(script, body)
        if not stream:
            return await self._whole(request, reader, writer, script, frames.whole)
        return await self._stream(
            request, reader, writer, script, "application/x-ndjson", frames.frames()
        )

    async def _openai_generation(
        self, request: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        body = request.body
        if not isinstance(body, dict):
            self._send_json(writer, 400, _openai_error("missing request body"))
            return True
        model = body.get("model") or ""
        if not self._knows(model):
            self._send_json(
                writer,
                404,
                _openai_error(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
            return True
        script = self.script_for(model)
        if script.status is not None:
            self._send_json(writer, script.status, _openai_error(script.error, "api_error"))
            return True
        script = _calling_offered_tool(script, body)
        frames = _OpenAIFrames(model, script)
        frames.logprobs = _logprobs_asked(script, body)
        if not body.get("stream"):
            return await self._whole(request, reader, writer, script, frames.whole)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(
            request,
            reader,
            writer,
            script,
            "text/event-stream",
            frames.frames(usage),
            extra="Cache-Control: no-cache\r\nx-request-id: req_mock\r\n",
        )

    async def _whole(
        self,
        request: Received,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        script: Script,
        build: Any,
    ) -> bool:
        record = self._record(request)
        watcher = asyncio.ensure_future(_watch_eof(reader))
        try:
            pause = script.ttft + script.delay * len(script.pieces())
            if pause:
                await _pause(watcher, pause)
            if script.cut_after is not None:
                raise _Cut
            if script.error_after is not None:
                self._send_json(writer, 500, {"error": script.error})
            else:
                self._send_json(writer, 200, build())
            record.first_byte_at = time.monotonic()
            await writer.drain()
            record.tokens_sent = len(script.pieces())
            record.completed = True
            return True
        except (_Gone, ConnectionError):
            self._closed(record, watcher)
            raise
        finally:
            record.finished_at = time.monotonic()
            await _stop_watching(watcher)

    async def _stream(
        self,
        request: Received,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        script: Script,
        content_type: str,
        frames: Iterator[bytes | None],
        extra: str = "",
    ) -> bool:
        """Write `frames` as a chunked body, honouring the script's pace and cut."""
        record = self._record(request)
        watcher = asyncio.ensure_future(_watch_eof(reader))
        try:
            if script.ttft:
                await _pause(watcher, script.ttft)
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
                f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
            )
            record.first_byte_at = time.monotonic()
            batch: list[bytes] = []
            for frame in frames:
                if frame is _THOUGHT:
                    if script.think_delay:
                        writer.write(b"".join(batch))
                        batch.clear()
                        await _drain(writer, watcher)
                        await _pause(watcher, script.think_delay)
                    continue
                if frame is not _TOKEN and frame is not _TAIL:
                    batch.append(b"%x\r\n%s\r\n" % (len(frame), frame))
                    continue
                if script.cut_after is not None and record.tokens_sent >= script.cut_after:
                    writer.write(b"".join(batch))
                    raise _Cut
                if frame is _TAIL:
                    continue
                if script.delay or len(batch) >= 256:
                    writer.write(b"".join(batch))
                    batch.clear()
                    await _drain(writer, watcher)
                    if script.delay:
                        await _pause(watcher, script.delay)
                record.tokens_sent += 1
            batch.append(b"0\r\n\r\n")
            # Noted before the client can read the end, so a test that saw it sees this too.
            record.finished_at = time.monotonic()
            writer.write(b"".join(batch))
            await _drain(writer, watcher)
            record.completed = True
            return True
        except _Cut:
            record.finished_at = time.monotonic()
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.transport.abort()
            raise
        except (_Gone, ConnectionError):
            self._closed(record, watcher)
            raise
        finally:
            record.finished_at = record.finished_at or time.monotonic()
            await _stop_watching(watcher)
            self._notify()

    def _record(self, request: Received) -> StreamRecord:
        model = request.body.get("model", "") if isinstance(request.body, dict) else ""
        record = StreamRecord(request.path, model, started_at=time.monotonic())
        self.streams.append(record)
        return record

    def _closed(self, record: StreamRecord, watcher: asyncio.Future) -> None:
        seen = watcher.result() if watcher.done() and not watcher.cancelled() else None
        record.client_closed_at = seen or time.monotonic()
        record.cut_by_client = not record.completed
        self._notify()


async def _watch_eof(reader: asyncio.StreamReader) -> float:
    """Return when the client closes its side, or resets the connection (an aborted socket,
    as the engine's is when a reply is stopped); no pipelining: nothing else comes mid-reply."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    return time.monotonic()


async def _stop_watching(watcher: asyncio.Future) -> None:
    """Cancel the EOF watcher and wait until it has let go of the reader."""
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _pause(watcher: asyncio.Future, seconds: float) -> None:
    """Sleep, but wake up at once if the client goes away."""
    done, _ = await asyncio.wait({watcher}, timeout=seconds)
    if done:
        raise _Gone


async def _drain(writer: asyncio.StreamWriter, watcher: asyncio.Future) -> None:
    if watcher.done():
        raise _Gone
    await writer.drain()


class _OllamaFrames:
    """NDJSON lines of /api/chat and /api/generate for one script."""

    def __init__(self, model: str, script: Script, chat: bool, raw: bool) -> None:
        self.model, self.script, self.chat, self.raw = model, script, chat, raw
        self.logprobs: int | None = None  # alternatives per token when logprobs were asked

    def _chunk(self, content: str = "", thinking: str = "", tool_calls: Any = None) -> dict:
        out: dict[str, Any] = {"model": self.model, "created_at": CREATED_AT}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            out["message"] = message
        else:
            out["response"] = content
            if thinking:
                out["thinking"] = thinking
            if tool_calls:
                out["tool_calls"] = tool_calls
        return out

    def _tool_calls(self) -> list[dict]:
        return [
            {
                "id": call.get("id", f"call_{i:08d}"),
                "function": {"index": i, "name": call["name"], "arguments": call["arguments"]},
            }
            for i, call in enumerate(self.script.tool_calls or [])
        ]

    def _final(self) -> dict:
        script = self.script
        final = self._chunk()
        final["done"] = True
        final["done_reason"] = script.done_reason
        if script.report_usage:
            count = len(script.pieces())
            final.update(
                total_duration=5_000_000 + count * 1000,
                load_duration=1_000_000,
                prompt_eval_count=script.prompt_tokens,
                prompt_eval_duration=2_000_000,
                eval_count=count,
                eval_duration=2_000_000 + count * 1000,
            )
        if not self.chat and not self.raw:
            final["context"] = script.context if script.context is not None else [1, 2, 3]
        return final

    def frames(self) -> Iterator[bytes | None]:
        script = self.script
        for piece in script.thinking_pieces():
            yield _THOUGHT
            yield json.dumps({**self._chunk(thinking=piece), "done": False}).encode() + b"\n"
        for sent, piece in enumerate(script.pieces()):
            if script.error_after is not None and sent == script.error_after:
                yield json.dumps({"error": script.error}).encode() + b"\n"
                return
            yield _TOKEN
            if script.heartbeat:
                yield b"\n"
            chunk = {**self._chunk(content=piece), "done": False}
            if self.logprobs is not None:
                chunk["logprobs"] = [_token_logprob(sent, piece, self.logprobs)]
            yield json.dumps(chunk).encode() + b"\n"
        if script.error_after is not None:
            yield json.dumps({"error": script.error}).encode() + b"\n"
            return
        yield _TAIL
        if script.tool_calls:
            chunk = self._chunk(tool_calls=self._tool_calls())
            yield json.dumps({**chunk, "done": False}).encode() + b"\n"
        yield json.dumps(self._final()).encode() + b"\n"

    def whole(self) -> dict:
        script = self.script
        out = self._final()
        text, thinking = "".join(script.pieces()), "".join(script.thinking_pieces())
        if self.logprobs is not None:
            pieces = enumerate(script.pieces())
            out["logprobs"] = [_token_logprob(i, piece, self.logprobs) for i, piece in pieces]
        if self.chat:
            out["message"]["content"] = text
            if thinking:
                out["message"]["thinking"] = thinking
            if script.tool_calls:
                out["message"]["tool_calls"] = self._tool_calls()
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        return out


class _OpenAIFrames:
    """SSE events of /v1/chat/completions for one script."""

    def __init__(self, model: str, script: Script) -> None:
        self.model, self.script = model, script
        self.eol = b"\r\n" if script.crlf else b"\n"
        self.logprobs: int | None = None  # alternatives per token when logprobs were asked

    def _event(self, payload: Any) -> bytes:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        prefix = b"event: message" + self.eol if self.script.crlf else b""
        return prefix + b"data: " + data + self.eol + self.eol

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _usage(self) -> dict:
        count = len(self.script.pieces())
        return {
            "prompt_tokens": self.script.prompt_tokens,
            "completion_tokens": count,
            "total_tokens": self.script.prompt_tokens + count,
        }

    def _calls(self) -> list[tuple[int, dict, str]]:
        out = []
        for i, call in enumerate(self.script.tool_calls or []):
            arguments = call["arguments"]
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            out.append((i, call, text))
        return out

    def _finish_reason(self) -> str:
        return "tool_calls" if self.script.tool_calls else self.script.done_reason

    def frames(self, include_usage: bool) -> Iterator[bytes | None]:
        script = self.script
        yield self._event(self._chunk({"role": "assistant", "content": ""}))
        for piece in script.thinking_pieces():
            yield _THOUGHT
            yield self._event(self._chunk({script.reasoning_field: piece}))
        for sent, piece in enumerate(script.pieces()):
            if script.error_after is not None and sent == script.error_after:
                yield self._event(_openai_error(script.error, "api_error"))
                return
            yield _TOKEN
            if script.heartbeat:
                yield b": ping" + self.eol + self.eol
            chunk = self._chunk({"content": piece})
            if self.logprobs is not None:
                entry = _token_logprob(sent, piece, self.logprobs)
                chunk["choices"][0]["logprobs"] = {"content": [entry], "refusal": None}
            yield self._event(chunk)
        if script.error_after is not None:
            yield self._event(_openai_error(script.error, "api_error"))
            return
        yield _TAIL
        yield from self._tool_call_frames()
        yield self._event(self._chunk({}, self._finish_reason()))
        if include_usage and script.report_usage:
            usage = {**self._chunk({}), "choices": [], "usage": self._usage()}
            yield self._event(usage)
        yield self._event(b"[DONE]")

    def _tool_call_frames(self) -> Iterator[bytes]:
        """First fragments with id/name, then argument pieces interleaved across indexes."""
        calls = self._calls()
        for i, call, _ in calls:
            first = {
                "index": i,
                "id": call.get("id", f"call_{i:08d}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            yield self._event(self._chunk({"tool_calls": [first]}))
        pieces = {i: [text[j : j + 7] for j in range(0, len(text), 7)] for i, _, text in calls}
        while any(pieces.values()):
            for i in pieces:
                if pieces[i]:
                    fragment = {"index": i, "function": {"arguments": pieces[i].pop(0)}}
                    yield self._event(self._chunk({"tool_calls": [fragment]}))

    def whole(self) -> dict:
        script = self.script
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(script.pieces()),
            "refusal": None,
        }
        if script.thinking:
            message[script.reasoning_field] = "".join(script.thinking_pieces())
        if script.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.get("id", f"call_{i:08d}"),
                    "type": "function",
                    "function": {"name": call["name"], "arguments": text},
                }
                for i, call, text in self._calls()
            ]
        logprobs = None
        if self.logprobs is not None:
            pieces = enumerate(script.pieces())
            entries = [_token_logprob(i, piece, self.logprobs) for i, piece in pieces]
            logprobs = {"content": entries, "refusal": None}
        out: dict[str, Any] = {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": self._finish_reason(),
                }
            ],
        }
        if script.report_usage:
            out["usage"] = self._usage()
        return out


def _logprobs_asked(script: Script, body: dict) -> int | None:
    """How many alternatives per token a request asked logprobs with; None: not asked."""
    if not (script.logprobs and body.get("logprobs") is True):
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) else 0


def _token_logprob(index: int, token: str, alternatives: int) -> dict:
    """The logprob entry of the `index`-th token (the same shape in both protocols)."""
    logprob = -0.25 * (index + 1)
    top = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
    top += [
        {"token": f"alt{n}", "logprob": logprob - n, "bytes": list(f"alt{n}".encode())}
        for n in range(1, alternatives)
    ]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": top[:alternatives],
    }


def _calling_offered_tool(script: Script, body: dict) -> Script:
    """`script` calling the forced tool, else the first one offered, when it says so."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if script.call_offered_tool is None or not tools or choice == "none":
        return script
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    name = forced or tools[0]["function"]["name"]
    return replace(
        script, tool_calls=[{"name": name, "arguments": script.call_offered_tool}], tokens=0
    )


def _vector(text: str) -> list[float]:
    """A small deterministic embedding of `text`."""
    return [round(len(text) / 10, 3), 0.5, -0.25]


def _openai_error(
    message: str, kind: str = "invalid_request_error", code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _tag(name: str) -> dict:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": 2_019_393_189,
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }


def _capabilities(name: str) -> list[str]:
    """What /api/show says a model can do (Ollama's /api/tags does not say): models named
    like vision models (llava, *-vision) also see images, and reasoning models think."""
    capabilities = ["completion", "tools"]
    if "llava" in name or "vision" in name:
        capabilities.append("vision")
    if any(marker in name for marker in THINKING_MARKERS):
        capabilities.append("thinking")
    return capabilities


@contextlib.contextmanager
def mock_upstream(**kwargs: Any) -> Iterator[MockUpstream]:
    """A started MockUpstream for the duration of the block (for fixtures)."""
    with MockUpstream(**kwargs) as mock:
        yield mock


def main() -> None:
    """Serve until interrupted: `python -m tests.mock_upstream --tokens 50 --delay 0.05`."""
    import argparse

    parser = argparse.ArgumentParser(description="A scripted Ollama + OpenAI upstream.")
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    with MockUpstream(api_key=args.api_key) as mock:
        mock.script(tokens=args.tokens, delay=args.delay, ttft=args.ttft)
        print(mock.url, flush=True)  # the first line is the address, for scripts
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
