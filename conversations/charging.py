"""What the meter is told about the browser's generations: a reply, or a conversation's title."""

from __future__ import annotations

from conversations.models import Message
from llm import catalog
from llm.tokens import TokenUsage
from usage.services import Admission

# A reply's status, as the ledger says it.
LEDGER_STATUS = {
    Message.Status.COMPLETE: "ok",
    Message.Status.STOPPED: "stopped",
    Message.Status.INTERRUPTED: "interrupted",
    Message.Status.ERROR: "error",
}


async def charge(
    admission: Admission,
    model: str,
    usage: TokenUsage | None,
    *,
    status: str,
    error: str,
    ttft_ms: int | None = None,
) -> None:
    """Charge a generation of `model` (`usage` None: nothing was generated; `ttft_ms` None:
    no token came)."""
    await admission.charge(
        model=model,
        connection=await _connection_name(model),
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        usage_source=usage.source if usage else "estimated",
        status=status,
        error=error,
        ttft_ms=ttft_ms,
    )


async def _connection_name(model: str) -> str:
    """The connection serving `model`; "" when the catalog cannot say."""
    try:
        return (await catalog.resolve(model)).connection_name
    except Exception:
        return ""
