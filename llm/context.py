"""Whom the engine is working for, so its log lines can say it.

A front door sets `request_id` at the start of a request (the API door: its `x-request-id`;
the chat runner: something naming the reply); the engine's upstream failures are logged
with it. A task started inside the request sees the same value (contextvars are copied).
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("llm_request_id", default="")
