"""The normalized event stream every upstream is turned into (docs/architecture.md, the parts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(slots=True)
class Delta:
    """A piece of the reply: visible text and/or thinking, and the logprobs of its tokens
    when they were asked for (`{"token", "logprob", "bytes"?, "top_logprobs"?}` each, the
    same shape in both protocols, as the upstream sent them)."""

    text: str = ""
    thinking: str = ""
    logprobs: list[dict] | None = None


@dataclass(slots=True)
class ToolCall:
    """One complete tool call; `arguments` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict


@dataclass(slots=True)
class ToolCalls:
    """The complete tool calls of a turn (emitted once they are whole)."""

    calls: list[ToolCall]


@dataclass(slots=True)
class Timings:
    """Durations in nanoseconds; None when unknown.

    Ollama upstreams report them. For OpenAI upstreams the engine measures them itself:
    `prompt_eval_duration` is the time to the first token, `eval_duration` the time from
    the first token to the end, `load_duration` stays None.
    """

    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None


@dataclass(slots=True)
class Finished:
    """The end of a successful turn.

    `reason` uses Ollama's words: "stop", "length", "load", "unload", or the upstream's
    own word for anything else (e.g. "content_filter"). An OpenAI "tool_calls" finish is
    "stop": the ToolCalls event already says tools were called.
    `usage_source` is "upstream" when both counts came from the upstream, otherwise
    "estimated" (about 4 characters per token, see `llm.tokens`).
    """

    reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: Timings = field(default_factory=Timings)
    usage_source: Literal["upstream", "estimated"] = "upstream"
    context: list[int] | None = None


Event = Delta | ToolCalls | Finished


@dataclass(slots=True)
class Embedded:
    """The answer to an embeddings call: one vector per input, in input order."""

    vectors: list[list[float]]
    prompt_tokens: int
    usage_source: Literal["upstream", "estimated"] = "upstream"
    timings: Timings = field(default_factory=Timings)
