"""Search of conversations by title and message text, with escaped, highlighted snippets.

Runs on the database in use: full-text search on PostgreSQL, substring search on SQLite.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import User
from conversations import search
from conversations.models import Conversation, Message
from tests.conftest import make_user
from tests.conversations.conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def chat(owner: User, title: str, *texts: str) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, title=title, model=MODEL, last_message_at=timezone.now()
    )
    for text in texts:
        Message.objects.create(conversation=conversation, role="user", content=text)
    return conversation


def results(client: Client, query: str) -> str:
    response = client.get("/c/", {"q": query})
    assert response.status_code == 200
    return response.content.decode()


def snippets(body: str) -> list[str]:
    return re.findall(r'<span class="conv-snippet">(.*?)</span>', body, re.S)


def test_words_in_message_text_are_found_with_a_highlighted_snippet(
    member_client: Client, member: User
) -> None:
    chat(member, "Sorting", "Some intro. We compare quicksort with mergesort here.")
    chat(member, "Cooking", "Pasta with tomatoes")
    body = results(member_client, "quicksort")
    assert "Sorting" in body and "Cooking" not in body
    (snippet,) = snippets(body)
    assert "<mark>quicksort</mark>" in snippet and "mergesort" in snippet


def test_titles_are_found_without_a_snippet(member_client: Client, member: User) -> None:
    chat(member, "Holiday plans", "nothing relevant")
    body = results(member_client, "holiday")
    assert "Holiday plans" in body and snippets(body) == []


def test_snippets_are_escaped(member_client: Client, member: User) -> None:
    attack = 'before <script>alert("x")</script> <img src=x onerror=alert(1)> payload after'
    chat(member, "XSS", attack)
    body = results(member_client, "payload")
    (snippet,) = snippets(body)
    assert "<script>" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in snippet
    assert "&lt;img src=x onerror=alert(1)&gt;" in snippet
    assert "<mark>payload</mark>" in snippet


def test_a_query_with_markup_is_escaped_in_the_highlight(
    member_client: Client, member: User
) -> None:
    chat(member, "Markup", "the tag <b>bold</b> is here")
    body = results(member_client, "<b>bold")
    assert "<b>bold" not in body.replace("<mark>", "")  # never raw
    for snippet in snippets(body):
        assert "<b>" not in snippet


def test_a_long_message_gives_a_window_around_the_match(
    member_client: Client, member: User
) -> None:
    chat(member, "Long", "filler " * 200 + "needle " + "tail " * 200)
    (snippet,) = snippets(results(member_client, "needle"))
    assert snippet.startswith("…") and snippet.endswith("…") and "<mark>needle</mark>" in snippet
    assert len(snippet) < 400


def test_other_peoples_conversations_are_not_searched(member_client: Client, member: User) -> None:
    chat(make_user("eve"), "Eve's secret", "confidential plan")
    assert "Eve" not in results(member_client, "confidential")
    assert "No conversations match" in results(member_client, "confidential")


def test_partial_words_are_found(member_client: Client, member: User) -> None:
    chat(member, "Algorithms", "the Quicksort algorithm")
    body = results(member_client, "quick")
    assert "Algorithms" in body
    assert "<mark>Quick" in snippets(body)[0]


def test_the_snippet_function_escapes_and_marks() -> None:
    html = search.snippet("a <i>word</i> & Word", "word")
    assert "&lt;i&gt;" in html and "&amp;" in html
    assert html.count("<mark>") == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search")
def test_on_postgresql_words_match_in_any_order_and_the_index_serves_them(
    member_client: Client, member: User
) -> None:
    chat(member, "Order", "alpha beta gamma")
    assert "Order" in results(member_client, "gamma alpha")
    assert "No conversations match" in results(member_client, "gamma delta")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        query = search.matching_messages("alpha")
        sql, params = query.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "message_fts" in plan, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search")
def test_on_postgresql_query_syntax_is_not_injected(member_client: Client, member: User) -> None:
    chat(member, "Syntax", "plain words")
    for query in ["plain & | ! (", "'plain':*", "plain:A", "!!!", "<->"]:
        results(member_client, query)


def test_results_come_in_pages_without_counting_them_all(
    member_client: Client, member: User
) -> None:
    for i in range(55):
        chat(member, f"Chat {i:02d}", f"common word number {i}")
    first = results(member_client, "common")
    assert first.count('class="conv-item') == 50 and "More conversations" in first
    assert "page=2&q=common" in first
    second = member_client.get("/c/", {"q": "common", "page": "2", "more": "1"}).content.decode()
    assert second.count('class="conv-item') == 5 and "More conversations" not in second
    for page in ("abc", "0", "-1", "9" * 30):
        response = member_client.get("/c/", {"q": "common", "page": page, "more": "1"})
        assert response.status_code == 200
