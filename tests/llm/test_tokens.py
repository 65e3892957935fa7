"""Token counts: the upstream's when it reported them, else estimates (`llm.tokens`)."""

from __future__ import annotations

from llm.events import Finished
from llm.tokens import TokenUsage, estimated_usage, usage_or_estimate


def test_an_estimate_counts_about_four_characters_a_token() -> None:
    assert estimated_usage(12, 13) == TokenUsage(12, 4, "estimated")  # 13 characters
    assert estimated_usage(0, 0) == TokenUsage(0, 0, "estimated")


def test_a_finished_generation_keeps_its_own_counts_and_their_source() -> None:
    finished = Finished("stop", prompt_tokens=3, completion_tokens=5, usage_source="estimated")
    usage = usage_or_estimate(finished, prompt_estimate=99, completion_chars=400)
    assert usage == TokenUsage(3, 5, "estimated")
    unfinished = usage_or_estimate(None, prompt_estimate=2, completion_chars=9)
    assert unfinished == TokenUsage(2, 3, "estimated")
