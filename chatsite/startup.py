"""Start-up tasks of the apps, run by `manage.py prepare` before the server starts."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

# Each entry is "module:function"; the function takes no arguments and may return a
# line to print. Apps own their tasks; this list only orders them.
TASKS = [
    "llm.services:sync_default_connections",
    "conversations.services:mark_orphaned_replies",
]


def tasks() -> list[Callable[[], object]]:
    """The start-up tasks whose module exists, in order."""
    found = []
    for entry in TASKS:
        module_name, function_name = entry.split(":")
        try:
            module = import_module(module_name)
        except ModuleNotFoundError:
            continue
        if function := getattr(module, function_name, None):
            found.append(function)
    return found
