"""The Ollama-native door: /api/chat, /api/generate, /api/tags, /api/show, /api/version, /api/ps."""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.models import ApiKey
from api import ndjson, validation
from api.endpoint import endpoint
from api.errors import JSON, ApiError
from api.formats import OLLAMA
from api.ndjson import NDJSON, OllamaStreamEncoder
from api.relay import Relay, begin, collect, embed_metered, find_model, prompt_estimate
from llm.catalog import CatalogModel, list_models
from llm.client import embed as engine_embed
from llm.client import generate as engine_generate
from llm.client import stream_chat
from llm.errors import LLMError
from llm.events import Delta, ToolCalls
from llm.tokens import estimate_prompt_tokens
from usage import limits

# The Ollama API version this door speaks; some clients gate features on it.
OLLAMA_VERSION = "0.12.3"


def json_response(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(ndjson.dumps(body), status=status, content_type=JSON)


def ndjson_response(lines: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=NDJSON)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold the tokens back
    return response


def _model_name(body: dict) -> str:
    model = body.get("model") or ""
    if not model:
        raise ApiError(400, "model is required", param="model")
    return model


def _check_common(body: dict, fields: dict[str, tuple[str, str]]) -> None:
    validation.check_ranges(body, fields)
    validation.check_options(body.get("options"))
    validation.check_think(body.get("think"))
    validation.check_keep_alive(body.get("keep_alive"))


@endpoint("POST", wire=OLLAMA)
async def chat(request: HttpRequest, key: ApiKey) -> HttpResponse | StreamingHttpResponse:
    """POST /api/chat: NDJSON unless `"stream": false`."""
    body = validation.read_body(request, "ChatRequest")
    validation.check_fields(body, validation.CHAT_FIELDS, "ChatRequest")
    model = _model_name(body)
    messages = validation.check_messages(body.get("messages") or [])
    _check_common(body, validation.CHAT_FIELDS)
    format = validation.check_format(body.get("format"))
    target = await find_model(key, model, OLLAMA)
    stream = body.get("stream") is not False
    encoder = OllamaStreamEncoder(model, chat=True)
    if not messages:
        return _load_answer(encoder, body, stream)
    relay = await begin(
        key,
        target,
        lambda: stream_chat(
            model,
            messages,
            options=body.get("options"),
            tools=body.get("tools"),
            format=format,
            think=body.get("think"),
            keep_alive=body.get("keep_alive"),
            stream=stream,
            **_passed_on(body),
            target=target,
        ),
        wire=OLLAMA,
        prompt_estimate=estimate_prompt_tokens(messages),
    )
    if stream:
        return ndjson_response(encode(relay, encoder, context=False))
    return json_response(await whole(relay, encoder, context=False))


@endpoint("POST", wire=OLLAMA)
async def generate(request: HttpRequest, key: ApiKey) -> HttpResponse | StreamingHttpResponse:
    """POST /api/generate: a prompt completion, NDJSON unless `"stream": false`."""
    body = validation.read_body(request, "GenerateRequest")
    validation.check_fields(body, validation.GENERATE_FIELDS, "GenerateRequest")
    model = _model_name(body)
    _check_common(body, validation.GENERATE_FIELDS)
    validation.check_images(body.get("images"))
    format = validation.check_format(body.get("format"))
    raw = bool(body.get("raw"))
    if raw and (body.get("template") or body.get("system") or body.get("context")):
        raise ApiError(400, "raw mode does not support template, system, or context")
    target = await find_model(key, model, OLLAMA)
    stream = body.get("stream") is not False
    encoder = OllamaStreamEncoder(model, chat=False)
    prompt = body.get("prompt") or ""
    if not prompt and not body.get("images"):
        return _load_answer(encoder, body, stream)
    relay = await begin(
        key,
        target,
        lambda: engine_generate(
            model,
            prompt,
            suffix=body.get("suffix"),
            system=body.get("system"),
            template=body.get("template"),
            context=body.get("context"),
            raw=body.get("raw"),
            images=body.get("images"),
            options=body.get("options"),
            format=format,
            think=body.get("think"),
            keep_alive=body.get("keep_alive"),
            stream=stream,
            **_passed_on(body),
            target=target,
        ),
        wire=OLLAMA,
        prompt_estimate=prompt_estimate(prompt, body.get("system") or ""),
    )
    if stream:
        return ndjson_response(encode(relay, encoder, context=not raw))
    return json_response(await whole(relay, encoder, context=not raw))


def _passed_on(body: dict) -> dict:
    """The request's fields an Ollama upstream gets as they are and an OpenAI-compatible
    one gets translated or ignores (docs/api.md); their types are checked already."""
    return {name: body.get(name) for name in ("truncate", "shift", "logprobs", "top_logprobs")}


def _load_answer(encoder: OllamaStreamEncoder, body: dict, stream: bool) -> HttpResponse:
    """An empty turn loads the model (or unloads it with keep_alive 0), as Ollama answers."""
    answer = encoder.base(done=True)
    answer["done_reason"] = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
    if stream:
        return HttpResponse(ndjson.dumps(answer) + b"\n", content_type=NDJSON)
    return json_response(answer)


async def encode(
    relay: Relay, encoder: OllamaStreamEncoder, *, context: bool
) -> AsyncIterator[bytes]:
    """The NDJSON lines of a started generation; an error once started is one last line."""
    error: BaseException | None = None
    try:
        async for event in relay:
            if isinstance(event, Delta):
                if event.text or event.thinking or event.logprobs:
                    yield encoder.delta(event.text, event.thinking, event.logprobs)
            elif isinstance(event, ToolCalls):
                yield encoder.tool_calls(event.calls)
        yield encoder.final(relay.finished, relay.clock, context=context)
    except LLMError as exc:
        yield OLLAMA.stream_error(exc, relay.model)
    except BaseException as exc:
        error = exc
        raise
    finally:
        await relay.close(error)  # a no-op unless the client left before the relay began


async def whole(relay: Relay, encoder: OllamaStreamEncoder, *, context: bool) -> dict:
    """The one JSON object of a `"stream": false` request (errors stay non-2xx)."""
    collected = await collect(relay, OLLAMA)
    answer = encoder.final_object(relay.finished, relay.clock, context=context)
    reply = answer["message"] if encoder.chat else answer
    reply["content" if encoder.chat else "response"] = collected.text
    if collected.thinking:
        reply["thinking"] = collected.thinking
    if collected.calls:
        reply["tool_calls"] = [ndjson.tool_call(call, i) for i, call in enumerate(collected.calls)]
    if collected.logprobs:
        answer["logprobs"] = ndjson.logprobs(collected.logprobs)
    return answer


def _tag(entry: CatalogModel) -> dict:
    return {
        "name": entry.name,
        "model": entry.name,
        "modified_at": entry.modified_at or "1970-01-01T00:00:00Z",
        "size": entry.size,
        "digest": entry.digest,
        "details": _details(entry),
        "capabilities": entry.capabilities,
    }


def _details(entry: CatalogModel) -> dict:
    defaults = {
        "parent_model": "",
        "format": "",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }
    return {**defaults, **entry.details}


async def _visible_models(key: ApiKey) -> list[CatalogModel]:
    try:
        models = await list_models()
    except LLMError as exc:
        raise OLLAMA.engine_error(exc, "*") from None
    effective = await limits.effective_limits_async(key.user)
    return [entry for entry in models if effective.allows(entry.name, key)]


@endpoint("GET", "HEAD", wire=OLLAMA)
async def tags(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """GET /api/tags: the models this key may use."""
    return json_response({"models": [_tag(entry) for entry in await _visible_models(key)]})


@endpoint("POST", wire=OLLAMA)
async def show(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """POST /api/show: what the catalog knows of a model (`model_info` always present)."""
    body = validation.read_body(request, "ShowRequest")
    validation.check_fields(body, validation.SHOW_FIELDS, "ShowRequest")
    name = body.get("model") or body.get("name") or ""
    if not name:
        raise ApiError(400, "model is required", param="model")
    entry = (await find_model(key, name, OLLAMA)).entry
    details = _details(entry)
    return json_response(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": details,
            "model_info": _model_info(details["family"], entry.context_length),
            "capabilities": entry.capabilities or ["completion"],
            "modified_at": entry.modified_at or "1970-01-01T00:00:00Z",
        }
    )


def _model_info(family: str, context_length: int) -> dict:
    """/api/show's model_info: the architecture and its context length, when known."""
    if not family:
        return {}
    info: dict[str, str | int] = {"general.architecture": family}
    if context_length:
        info[f"{family}.context_length"] = context_length
    return info


@endpoint("GET", "HEAD", wire=OLLAMA)
async def version(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """GET /api/version."""
    return json_response({"version": OLLAMA_VERSION})


@endpoint("GET", wire=OLLAMA)
async def ps(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """GET /api/ps: the engine does not track loaded models, so none are listed."""
    return json_response({"models": []})


@endpoint("POST", wire=OLLAMA)
async def embed(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """POST /api/embed: one vector per input string, from either kind of upstream."""
    body = validation.read_body(request, "EmbedRequest")
    validation.check_fields(body, validation.EMBED_FIELDS, "EmbedRequest")
    model = _model_name(body)
    texts = validation.check_embed_input(body.get("input"))
    validation.check_ranges(body, validation.EMBED_FIELDS)
    validation.check_options(body.get("options"))
    validation.check_keep_alive(body.get("keep_alive"))
    target = await find_model(key, model, OLLAMA)
    if not texts:  # Ollama answers an empty input with no vectors
        return json_response({"model": model, "embeddings": []})
    result = await embed_metered(
        key,
        target,
        lambda: engine_embed(
            model,
            body["input"],  # as supplied: a string stays a string upstream
            truncate=body.get("truncate"),
            options=body.get("options"),
            keep_alive=body.get("keep_alive"),
            dimensions=body.get("dimensions"),
            target=target,
        ),
        wire=OLLAMA,
        prompt_estimate=prompt_estimate(*texts),
    )
    answer: dict = {"model": model, "embeddings": result.vectors}
    for name in ("total_duration", "load_duration"):
        value = getattr(result.timings, name)
        if value is not None:
            answer[name] = value
    answer["prompt_eval_count"] = result.prompt_tokens
    return json_response(answer)
