"""The OpenAI-compatible door: /v1/chat/completions, /v1/embeddings and /v1/models."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.models import ApiKey
from api import bodies, openai_validation, sse
from api.endpoint import endpoint
from api.errors import JSON, ApiError
from api.formats import OPENAI
from api.relay import Relay, begin, collect, embed_metered, find_model, prompt_estimate
from api.sse import EVENT_STREAM, OpenAIStreamEncoder
from llm.catalog import CatalogModel, list_models
from llm.client import Target, stream_chat
from llm.client import embed as engine_embed
from llm.errors import InvalidRequest, LLMError
from llm.events import Delta, ToolCalls
from llm.passthrough import refuse_unhonoured
from llm.tokens import estimate_prompt_tokens
from llm.translate import openai_request_to_native
from usage import limits


def json_response(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body, separators=(",", ":")), status=status, content_type=JSON)


@endpoint("POST", wire=OPENAI)
async def chat_completions(
    request: HttpRequest, key: ApiKey
) -> HttpResponse | StreamingHttpResponse:
    """POST /v1/chat/completions: SSE with `"stream": true`, one chat.completion otherwise."""
    body = openai_validation.read_body(request)
    openai_validation.check_chat(body)
    try:
        native = openai_request_to_native(body)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, param=exc.param) from None
    except (TypeError, AttributeError, ValueError, KeyError):
        # A shape the translation did not expect is still the caller's mistake, not a 500.
        raise ApiError(400, "the request body does not match the chat completions schema") from None
    tools = None if body.get("tool_choice") == "none" else native.tools
    target = await find_model(key, native.model, OPENAI)
    _check_upstream(body, target)
    relay = await begin(
        key,
        target,
        lambda: stream_chat(
            native.model,
            native.messages,
            options=native.options or None,
            tools=tools or None,
            format=native.format,
            think=native.think,
            stream=native.stream,
            logprobs=native.logprobs,
            top_logprobs=native.top_logprobs,
            openai_fields=native.openai,
            target=target,
        ),
        wire=OPENAI,
        prompt_estimate=estimate_prompt_tokens(native.messages),
    )
    if not native.stream:
        return json_response(await whole(relay, native.model))
    response = StreamingHttpResponse(
        encode(relay, OpenAIStreamEncoder(native.model, include_usage=native.include_usage)),
        content_type=EVENT_STREAM,
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold the events back
    return response


def _check_upstream(body: dict, target: Target) -> None:
    """400 for a field the model's server cannot honour where ignoring it would change the
    answer (`llm.passthrough`), before the call is admitted."""
    try:
        refuse_unhonoured(body, target.connection.kind)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, param=exc.param, code="unsupported_parameter") from None


async def encode(relay: Relay, encoder: OpenAIStreamEncoder) -> AsyncIterator[bytes]:
    """The SSE events of a started completion; an error once started is one last event."""
    error: BaseException | None = None
    called_tools = False
    try:
        yield encoder.role()
        async for event in relay:
            if isinstance(event, Delta):
                if event.thinking:
                    yield encoder.reasoning(event.thinking)
                if event.text or event.logprobs:
                    yield encoder.content(event.text, event.logprobs)
            elif isinstance(event, ToolCalls):
                called_tools = True
                yield encoder.tool_calls(event.calls)
        yield encoder.finish(sse.finish_reason(relay.finished, called_tools))
        if encoder.include_usage:
            yield encoder.usage(relay.finished)
        yield sse.DONE
    except LLMError as exc:
        yield OPENAI.stream_error(exc, relay.model)
    except BaseException as exc:
        error = exc
        raise
    finally:
        await relay.close(error)  # a no-op unless the client left before the relay began


async def whole(relay: Relay, model: str) -> dict:
    """The chat.completion of a non-streaming request (errors stay non-2xx)."""
    collected = await collect(relay, OPENAI)
    return sse.completion(
        model,
        text=collected.text,
        thinking=collected.thinking,
        calls=collected.calls,
        finished=relay.finished,
        token_logprobs=collected.logprobs,
    )


@endpoint("POST", wire=OPENAI)
async def embeddings(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """POST /v1/embeddings: floats, or base64 float32 as the openai SDKs ask by default."""
    body = openai_validation.read_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    texts = _embedding_input(body.get("input"))
    openai_validation.check_embeddings(body)
    encoding = body.get("encoding_format") or "float"
    dimensions = body.get("dimensions")
    target = await find_model(key, model, OPENAI)
    result = await embed_metered(
        key,
        target,
        lambda: engine_embed(model, texts, dimensions=dimensions, target=target),
        wire=OPENAI,
        prompt_estimate=prompt_estimate(*texts),
    )
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, encoding)}
        for index, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return json_response({"object": "list", "data": data, "model": model, "usage": usage})


def _embedding_input(value: object) -> list[str]:
    """The texts to embed: a string or a non-empty array of strings (token ids can't be
    passed on: the upstream's tokenizer is not ours)."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) and item for item in value):
        if len(value) > bodies.EMBED_MAX_INPUTS:
            limit = bodies.EMBED_MAX_INPUTS
            raise ApiError(400, f"'input' may hold at most {limit} strings", param="input")
        return value
    if isinstance(value, list) and value and all(isinstance(item, int | list) for item in value):
        raise ApiError(400, "token arrays are not supported; send the text", param="input")
    raise ApiError(
        400, "'input' must be a non-empty string or array of non-empty strings", param="input"
    )


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _model(entry: CatalogModel) -> dict:
    return {
        "id": entry.name,
        "object": "model",
        "created": entry.created or 0,
        "owned_by": entry.owned_by or entry.connection_name,
    }


@endpoint("GET", wire=OPENAI)
async def models(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """GET /v1/models: the models this key may use (`data` is always an array)."""
    try:
        entries = await list_models()
    except LLMError as exc:
        raise OPENAI.engine_error(exc, "*") from None
    effective = await limits.effective_limits_async(key.user)
    data = [_model(entry) for entry in entries if effective.allows(entry.name, key)]
    return json_response({"object": "list", "data": data})


@endpoint("GET", wire=OPENAI)
async def model(request: HttpRequest, key: ApiKey, model_id: str) -> HttpResponse:
    """GET /v1/models/{id}; ids may contain `:` and `/`."""
    return json_response(_model((await find_model(key, model_id, OPENAI)).entry))
