"""What of an OpenAI Chat Completions request reaches the model server, kept in one place.

The rule (docs/api.md, "What reaches the model server"): a field the upstream's protocol has
is passed through unchanged; a field that must be translated to the other protocol is
translated as faithfully as that protocol allows; a field that cannot be honoured is refused
with a 400 naming it when ignoring it would change the meaning, and ignored otherwise.

An OpenAI-compatible upstream gets the caller's own fields of `OPENAI_CHAT_FIELDS`, as sent;
the product sets the fields of `OPENAI_CHAT_OWNED` itself. An Ollama upstream gets the
translation of `llm.translate.openai_request_to_native`, after `refuse_unhonoured`.
"""

from __future__ import annotations

from typing import Any

from llm.errors import InvalidRequest

# Chat Completions fields sent unchanged to an OpenAI-compatible upstream.
OPENAI_CHAT_FIELDS = frozenset(
    {
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "modalities",  # only ["text"]: audio is refused
        "reasoning_effort",
        "verbosity",
        "prediction",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "metadata",
        "store",
        "moderation",
        "web_search_options",
    }
)
# Fields the product sets itself: the server's own model name, streaming (with usage, for
# real counts), one choice, and the connection's service tier (its owner's bill).
OPENAI_CHAT_OWNED = frozenset({"model", "stream", "stream_options", "n", "service_tier"})
# Refused on every upstream: their answers (legacy function calls, audio) are not relayed.
OPENAI_CHAT_REFUSED = {
    "functions": "use 'tools' instead",
    "function_call": "use 'tool_choice' instead",
    "audio": "audio output is not relayed",
}
# Refused on an Ollama upstream, which has no equivalent: ignoring them changes the answer.
OLLAMA_UNHONOURED = {
    "logit_bias": "Ollama has no logit bias",
    "web_search_options": "Ollama does not search the web",
    "moderation": "Ollama does not moderate",
}


def openai_chat_fields(body: dict) -> dict[str, Any]:
    """The caller's fields an OpenAI-compatible upstream gets unchanged (nulls are unset).

    Message roles are lower-cased, as the door accepts them in any case.
    """
    fields = {
        name: value
        for name, value in body.items()
        if name in OPENAI_CHAT_FIELDS and value is not None
    }
    if isinstance(fields.get("messages"), list):
        fields["messages"] = [_lower_role(message) for message in fields["messages"]]
    effort = body.get("reasoning")
    if "reasoning_effort" not in fields and isinstance(effort, dict) and effort.get("effort"):
        fields["reasoning_effort"] = effort["effort"]  # the Responses API's spelling
    return fields


def openai_chat_body(fields: dict, model: str, *, stream: bool) -> dict[str, Any]:
    """The /chat/completions body for the caller's `fields`, addressed to the server's
    `model`, with the fields the product owns."""
    body: dict[str, Any] = {"model": model, **fields, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}  # real counts, not estimates
    return body


def refuse_unrelayable(body: dict) -> None:
    """InvalidRequest naming the first field no upstream's answer could be relayed for."""
    for name, hint in OPENAI_CHAT_REFUSED.items():
        if body.get(name) is not None:
            raise InvalidRequest(f"Unsupported parameter: '{name}': {hint}.", param=name)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise InvalidRequest(
            "Unsupported value: 'modalities' may only be ['text']: audio output is not relayed.",
            param="modalities",
        )


def refuse_unhonoured(body: dict, upstream: str) -> None:
    """InvalidRequest naming the first field `upstream` ("ollama" or "openai") cannot honour
    where ignoring it would change the answer; an empty `logit_bias` asks for nothing."""
    if upstream != "ollama":
        return
    for name, reason in OLLAMA_UNHONOURED.items():
        value = body.get(name)
        if value is not None and (value or name != "logit_bias"):
            raise InvalidRequest(
                f"Unsupported parameter: '{name}' is not supported by this model's server "
                f"({reason}).",
                param=name,
            )


def _lower_role(message: Any) -> Any:
    role = message.get("role") if isinstance(message, dict) else None
    if isinstance(role, str) and role != role.lower():
        return {**message, "role": role.lower()}
    return message
