"""Rendering cost of a streamed reply: 2,000 vs 20,000 tokens through the chat's renderer.

Run from the repository root: `.venv/bin/python bench/bench_chat_render.py`.
A realistic markdown reply (paragraphs, lists, tables, fenced code) is fed token by token
to `StreamingRenderer` in batches of 3 tokens (50 tokens/s with ~50 ms batches), and each
batch is turned into the websocket frame the runner publishes (the update partial), then
the final render. The goal: the 20,000-token reply costs at most 12x the 2,000-token one
(linear, not quadratic). For contrast it also times re-rendering the whole text per batch
for the 2,000-token reply (what the design rules out).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLOCKS = [
    "The quick brown fox jumps over the lazy dog while the **compiler** checks every "
    "`line` of the program and reports what it finds to the [team](https://example.com).",
    "- first point about caching\n- second point about *latency*\n- third point about `io`",
    "```python\ndef handler(request):\n    items = [x * 2 for x in range(10)]\n"
    "    return {'items': items, 'count': len(items)}\n```",
    "| name | value | note |\n|---|---|---|\n| alpha | 1 | first |\n| beta | 2 | second |",
    "1. Install the package\n2. Configure the settings\n3. Run the server and watch logs",
    "> A quoted remark about design choices and the trade-offs they bring to the system.",
]


def reply_tokens(count: int) -> list[str]:
    """`count` tokens of markdown (a token is a word with its whitespace)."""
    text = ""
    index = 0
    while len(re.findall(r"\s*\S+\s*", text)) < count:
        text += BLOCKS[index % len(BLOCKS)] + "\n\n"
        index += 1
    return re.findall(r"\s*\S+\s*", text)[:count]


def stream(tokens: list[str], batch: int) -> float:
    """CPU seconds to render the reply as the runner does, frames included."""
    from conversations import fragments
    from conversations.markdown import StreamingRenderer, render_markdown

    started = time.process_time()
    renderer = StreamingRenderer()
    for start in range(0, len(tokens), batch):
        renderer.feed("".join(tokens[start : start + batch]))
        rendered = renderer.update()
        fragments.update_frame(1, rendered.appended, rendered.tail)
    render_markdown("".join(tokens))  # the final message
    return time.process_time() - started


def naive(tokens: list[str], batch: int) -> float:
    from conversations.markdown import render_markdown

    started = time.process_time()
    for end in range(batch, len(tokens) + batch, batch):
        render_markdown("".join(tokens[:end]))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=3, help="tokens per published update")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="chatsite-bench-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
    import django

    django.setup()
    stream(reply_tokens(200), args.batch)  # warm up caches and imports
    small = min(stream(reply_tokens(2000), args.batch) for _ in range(args.repeat))
    large = min(stream(reply_tokens(20000), args.batch) for _ in range(args.repeat))
    quadratic = naive(reply_tokens(2000), args.batch)
    print(f"2,000-token reply:  {small * 1000:8.1f} ms CPU ({small / 2000 * 1e6:.0f} µs/token)")
    print(f"20,000-token reply: {large * 1000:8.1f} ms CPU ({large / 20000 * 1e6:.0f} µs/token)")
    ratio = large / small
    verdict = "ok" if ratio <= 12 else "TOO SLOW"
    print(f"ratio: {ratio:.2f} (goal <= 12) {verdict}")
    print(f"for contrast, re-rendering the whole 2,000-token reply per batch: {quadratic:.2f} s")


if __name__ == "__main__":
    main()
