"""The engine: connections, the model catalog, protocol clients and the event stream.

`llm.stream_chat` and `llm.generate` are loaded lazily so that importing the package
before Django's app registry is ready stays harmless.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate", "stream_chat"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from llm import client

        return getattr(client, name)
    raise AttributeError(f"module 'llm' has no attribute {name!r}")
