"""Token counts: the upstream's when it reports them, else estimates of about 4 characters
per token.

Four characters per token is the usual rule of thumb for English with BPE tokenizers; it
errs in both directions for code and other languages, which is why such counts are
marked `usage_source="estimated"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm.events import Finished

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimated tokens in `text` (at least 1 for non-empty text)."""
    return estimate_tokens_of_length(len(text))


def estimate_tokens_of_length(chars: int) -> int:
    """Estimated tokens in a text of `chars` characters (at least 1 for any)."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """Estimated prompt tokens of native messages, counting text only."""
    return sum(estimate_tokens(str(m.get("content") or "")) for m in messages)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """A generation's token counts, and whether the upstream reported them or they are
    estimated (a `usage_source`)."""

    prompt_tokens: int
    completion_tokens: int
    source: Literal["upstream", "estimated"]


def estimated_usage(prompt_estimate: int, completion_chars: int) -> TokenUsage:
    """The counts of a generation the upstream did not count: the prompt's estimate, and an
    estimate of `completion_chars` characters of text written."""
    return TokenUsage(prompt_estimate, estimate_tokens_of_length(completion_chars), "estimated")


def usage_or_estimate(
    finished: Finished | None, *, prompt_estimate: int, completion_chars: int
) -> TokenUsage:
    """The counts of a generation that finished; estimates for one that did not: the
    prompt's, and `completion_chars` characters of text written before it ended."""
    if finished is not None:
        return TokenUsage(finished.prompt_tokens, finished.completion_tokens, finished.usage_source)
    return estimated_usage(prompt_estimate, completion_chars)
