"""What a conversation's model can do, as its server reports it through the catalog.

Ollama says (its `/api/show` capabilities, e.g. "vision", "thinking"); OpenAI-compatible
servers do not. A model is taken to lack a capability only when its server lists
capabilities without it: when nobody can tell, the model server has the last word.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync

from llm import catalog

log = logging.getLogger(__name__)


async def capable_async(model: str, capability: str) -> bool:
    """Whether `model` has `capability`: False only when its server reports capabilities
    that lack it; True when unknown (or the catalog cannot be read)."""
    try:
        found = await catalog.resolve(model)
    except Exception as exc:  # the catalog cannot say: the model server will
        log.info("no capabilities for %s: %r", model, exc)
        return True
    if found.kind != "ollama" or not found.capabilities:
        return True
    return capability in found.capabilities


def capable(model: str, capability: str) -> bool:
    """`capable_async`, from synchronous code."""
    return async_to_sync(capable_async)(model, capability)


def sees_images(model: str) -> bool:
    """Whether `model` takes images."""
    return capable(model, "vision")


def thinks(model: str) -> bool:
    """Whether `model` can be asked to think, so its conversation shows the think switch."""
    return capable(model, "thinking")


def sight(model: str) -> Callable[[], bool]:
    """`sees_images(model)`, asked of the catalog once, and only when first needed."""
    return functools.cache(lambda: sees_images(model))
