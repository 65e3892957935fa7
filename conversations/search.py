"""Search of a person's conversations by title and message text, with highlighted snippets.

On PostgreSQL the messages are matched by full-text search (the `simple` configuration,
each word as a prefix, so partial words match too), served by the GIN index of migration
0005; elsewhere (SQLite) a case-insensitive substring match of the whole query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Conversation, Message

CONFIG = "simple"  # no stemming or stop words: what people typed is what is found
MAX_WORDS = 8
MAX_WORD = 64
SNIPPET_BEFORE = 60
SNIPPET_LENGTH = 200
MAX_PAGE = 10_000
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Search:
    """A query, prepared for the database in use."""

    text: str
    words: tuple[str, ...]
    full_text: bool  # PostgreSQL full-text search, else substring

    @classmethod
    def of(cls, query: str) -> Search:
        text = query.strip()
        words = tuple(word[:MAX_WORD] for word in _WORD.findall(text)[:MAX_WORDS])
        full_text = connection.vendor == "postgresql" and bool(words)
        return cls(text, words, full_text)

    def messages(self) -> Q:
        """Messages that match."""
        if not self.full_text:
            return Q(content__icontains=self.text)
        return Q(fts=SearchQuery(self._tsquery(), config=CONFIG, search_type="raw"))

    def titles(self) -> Q:
        """Conversations whose title matches."""
        if not self.full_text:
            return Q(title__icontains=self.text)
        found = Q()
        for word in self.words:
            found &= Q(title__icontains=word)
        return found

    def _tsquery(self) -> str:
        # Only word characters reach the query, so no tsquery syntax can be injected.
        return " & ".join(f"{word}:*" for word in self.words)

    def pattern(self) -> re.Pattern[str]:
        """What to highlight in a snippet."""
        if not self.full_text:
            return re.compile(re.escape(self.text), re.IGNORECASE)
        words = "|".join(re.escape(word) for word in sorted(self.words, key=len, reverse=True))
        return re.compile(rf"(?<!\w)(?:{words})\w*", re.IGNORECASE)


def _messages() -> QuerySet[Message]:
    """Messages with their full-text vector, as the index of migration 0005 holds it."""
    messages = Message.objects.all()
    if connection.vendor == "postgresql":
        messages = messages.annotate(fts=SearchVector("content", config=CONFIG))
    return messages


def matching(conversations: QuerySet[Conversation], query: str) -> QuerySet[Conversation]:
    """The `conversations` whose title or any message matches `query`; an empty query
    leaves them as they are."""
    search = Search.of(query)
    if not search.text:
        return conversations
    found = matching_messages(query).filter(conversation=OuterRef("pk"))
    return conversations.filter(search.titles() | Exists(found))


def matching_messages(query: str) -> QuerySet[Message]:
    """Every message that matches `query` (of anyone: callers narrow it)."""
    return _messages().filter(Search.of(query).messages())


def first_matches(conversation_ids: list[int], query: str) -> dict[int, str]:
    """The text of the first matching message of each conversation, by its id (those where
    only the title matched are left out): one query for a page of results."""
    search = Search.of(query)
    if search.full_text:
        # A page's few conversations: a regular expression per message costs far less
        # than parsing each into a tsvector, and finds the same words (at a word start).
        found = Message.objects.filter(conversation_id__in=conversation_ids)
        for word in search.words:
            found = found.filter(content__iregex=rf"\m{word}")
        firsts = found.order_by("conversation_id", "pk").distinct("conversation_id")
        return dict(firsts.values_list("conversation_id", "content"))
    found = _messages().filter(search.messages(), conversation_id__in=conversation_ids)
    first = found.filter(conversation=OuterRef("pk")).order_by("pk").values("content")[:1]
    rows = Conversation.objects.filter(pk__in=conversation_ids).annotate(text=Subquery(first))
    return {pk: text for pk, text in rows.values_list("pk", "text") if text is not None}


@dataclass
class ResultsPage:
    """A page of results, found without counting them all: one row more than the page
    tells whether there are more (a count would visit every match of a common word)."""

    object_list: list[Conversation]
    number: int
    has_next: bool

    @property
    def next_page_number(self) -> int:
        return self.number + 1


def results_page(
    conversations: QuerySet[Conversation], query: str, number: object, per_page: int
) -> ResultsPage:
    """Page `number` of the `conversations` matching `query`, with their snippets."""
    text = str(number)
    number = min(int(text), MAX_PAGE) if text.isdigit() and 0 < len(text) < 10 else 1
    number = max(number, 1)
    start = (number - 1) * per_page
    rows = list(matching(conversations, query)[start : start + per_page + 1])
    page = ResultsPage(rows[:per_page], number, len(rows) > per_page)
    annotate_snippets(page.object_list, query)
    return page


def snippet(text: str | None, query: str) -> SafeString:
    """The part of `text` around the first match of `query`, escaped, matches in <mark>."""
    if not text:
        return mark_safe("")
    pattern = Search.of(query).pattern()
    first = pattern.search(text)
    start = max(0, first.start() - SNIPPET_BEFORE) if first else 0
    window = text[start : start + SNIPPET_LENGTH]
    parts = ["…" if start else ""]
    at = 0
    for match in pattern.finditer(window):
        parts += [escape(window[at : match.start()]), f"<mark>{escape(match.group())}</mark>"]
        at = match.end()
    parts.append(escape(window[at:]))
    if start + SNIPPET_LENGTH < len(text):
        parts.append("…")
    return mark_safe("".join(parts))


def annotate_snippets(conversations: list[Conversation], query: str) -> None:
    """Give each conversation of a results page its `snippet` (HTML; "" if only its title
    matched)."""
    texts = first_matches([conversation.pk for conversation in conversations], query)
    for conversation in conversations:
        conversation.snippet = snippet(texts.get(conversation.pk), query)  # type: ignore[attr-defined]
