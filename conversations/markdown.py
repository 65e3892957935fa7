"""Model output to safe HTML: markdown-it (raw HTML off), Pygments for code, nh3 to sanitize.

`render_markdown(text)` renders a whole reply. `StreamingRenderer` renders a reply while
it grows in linear total time: finished top-level blocks are rendered once and handed
out as "append this", only the open tail block is rendered again on each update.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import nh3
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

_LINK_REL = "noopener noreferrer nofollow"
_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th",
    "td", "span", "div", "button", "input",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "button": {"type", "aria-label"},
    "input": {"type", "checked", "disabled"},
}  # classes: see _CLASSES (ammonia wants them only there)
_PYGMENTS_CLASSES = {name for name in STANDARD_TYPES.values() if name}
_CLASSES = {
    "span": _PYGMENTS_CLASSES | {"code-lang"},
    "div": {"code-block", "code-head", "highlight"},
    "pre": {"highlight"},
    "code": {"hl"},
    "button": {"copy-btn"},
    "input": {"task-list-item-checkbox"},
    "li": {"task-list-item"},
    "ul": {"contains-task-list"},
}


@cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        link_rel=_LINK_REL,
        url_schemes={"http", "https", "mailto"},
        filter_style_properties={"text-align"},
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def sanitize(html: str) -> str:
    """Keep only the tags, attributes and classes rendered markdown may carry."""
    return _cleaner().clean(html)


@cache
def _formatter() -> HtmlFormatter[str]:
    return HtmlFormatter(nowrap=True)


def _fence(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    code = token.content
    try:
        lexer = get_lexer_by_name(language, stripnl=False) if language else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _formatter()) if lexer else None
    return render_to_string(
        "conversations/code_block.html",
        {"language": language, "code": code, "highlighted": mark_safe(body) if body else None},
    )


@cache
def _markdown() -> MarkdownIt:
    # "commonmark" with html off: raw HTML from the model is shown as text, never parsed.
    md = MarkdownIt("commonmark", {"html": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(tasklists_plugin)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    # An image would load from wherever the model says, in every viewer's browser: a way to
    # leak the conversation to another server. A link needs a click.
    token = tokens[idx]
    src = token.attrGet("src") or ""
    label = renderer.renderInlineAsText(token.children or [], options, env) or src
    return format_html('<a href="{}">{}</a>', src, label)


def render_markdown(text: str) -> SafeString:
    """A whole reply as sanitized HTML."""
    if not text:
        return mark_safe("")
    md = _markdown()
    return mark_safe(sanitize(md.render(text)))


def _render_tokens(tokens: list[Token], env: dict[str, Any]) -> str:
    if not tokens:
        return ""
    md = _markdown()
    return sanitize(md.renderer.render(tokens, md.options, env))


@dataclass
class Rendered:
    """What changed since the previous update: HTML to append, and the new tail HTML."""

    appended: str
    tail: str


class StreamingRenderer:
    """Render a growing markdown text in linear total time.

    The text is split into a committed prefix (whole top-level blocks, already rendered)
    and an open tail. Each `update()` parses only the tail; blocks that a blank line
    separates from a later block can no longer change, so they move to the prefix.
    """

    def __init__(self, text: str = "") -> None:
        self.committed_html: list[str] = []
        self.tail = ""
        self.tail_html = ""
        if text:
            self.feed(text)
            self.update()

    @property
    def done_html(self) -> str:
        return "".join(self.committed_html)

    def feed(self, text: str) -> None:
        self.tail += text

    def update(self) -> Rendered:
        """Render what was fed since the last update."""
        env: dict[str, Any] = {}
        tokens = _markdown().parse(self.tail, env)
        cut = self._split(tokens)
        appended = ""
        if cut is not None:
            token_index, line = cut
            appended = _render_tokens(tokens[:token_index], env)
            self.committed_html.append(appended)
            self.tail = self.tail[_line_offset(self.tail, line) :]
            # Rendering ignores line maps, so the rest of the parse serves the new tail.
            tokens = tokens[token_index:]
        self.tail_html = _render_tokens(tokens, env)
        return Rendered(appended=appended, tail=self.tail_html)

    def _split(self, tokens: list[Token]) -> tuple[int, int] | None:
        """(token index, line) of the last top-level block that starts after a blank line."""
        lines: list[str] | None = None
        for index in range(len(tokens) - 1, 0, -1):
            token = tokens[index]
            if token.level != 0 or token.nesting == -1 or token.map is None:
                continue
            start = token.map[0]
            if start == 0:
                return None
            if lines is None:
                lines = self.tail.split("\n")
            if not lines[start - 1].strip():
                return index, start
        return None


def _line_offset(text: str, line: int) -> int:
    """The character offset where `line` (0-based) starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset
