"""A new conversation's title, asked of its model after the first exchange.

The request is metered like a reply (and skipped when the meter says no); without a title
from the model, the first words of the question stay the title.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from channels.db import database_sync_to_async

from conversations import charging, services
from conversations.models import Conversation
from conversations.reasoning import strip_thinking
from llm.client import stream_chat
from llm.errors import LLMError
from llm.events import Delta, Finished
from llm.tokens import estimate_tokens, usage_or_estimate
from usage.services import Admission, admit

log = logging.getLogger(__name__)

TITLE_TIMEOUT = 15.0
TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts like this. "
    "Answer with the title only, no quotes.\n\nUser: {question}\n\nAssistant: {answer}"
)


async def title_conversation(
    user: object, model: str, conversation_id: int, question: str, answer: str
) -> Conversation | None:
    """Ask `model` for a title and save it: the renamed conversation, or None."""
    try:
        # The title costs tokens too: the same meter, and no title when it says no.
        admission = await admit(user, door="web")
    except Exception as exc:  # refused, or the meter is unreachable
        log.info("no title for conversation %s: %s", conversation_id, exc)
        return None
    prompt = TITLE_PROMPT.format(question=question[:1000], answer=answer[:1000])
    title = await _ask(admission, model, prompt)
    if not title:
        return None
    return await database_sync_to_async(_save_title)(conversation_id, title)


async def _ask(admission: Admission, model: str, prompt: str) -> str:
    """The model's title ("" when it gave none), charged whatever happens."""
    pieces: list[str] = []
    finished: Finished | None = None
    title, error = "", ""
    try:
        async with asyncio.timeout(TITLE_TIMEOUT):
            events = stream_chat(
                model,
                [{"role": "user", "content": prompt}],
                options={"num_predict": 24, "temperature": 0.2},
                stream=False,
            )
            async with aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, Delta):
                        pieces.append(event.text)
                    elif isinstance(event, Finished):
                        finished = event
            title = services.clean_title(strip_thinking("".join(pieces)))
    except (LLMError, TimeoutError) as exc:
        error = str(exc) or "timed out"
        log.info("no title from %s: %s", model, error)
    finally:
        usage = usage_or_estimate(
            finished,
            prompt_estimate=estimate_tokens(prompt),
            completion_chars=sum(len(piece) for piece in pieces),
        )
        status = "ok" if finished else "error"
        await charging.charge(admission, model, usage, status=status, error=error)
    return title


def _save_title(conversation_id: int, title: str) -> Conversation | None:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is not None:
        services.rename(conversation, title)
    return conversation
