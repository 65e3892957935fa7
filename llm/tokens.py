"""Token estimates for upstreams that report no usage: about 4 characters per token.

Four characters per token is the usual rule of thumb for English with BPE tokenizers; it
errs in both directions for code and other languages, which is why such counts are
marked `usage_source="estimated"`.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimated tokens in `text` (at least 1 for non-empty text)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """Estimated prompt tokens of native messages, counting text only."""
    return sum(estimate_tokens(str(m.get("content") or "")) for m in messages)
