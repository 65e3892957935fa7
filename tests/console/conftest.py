"""Fixtures for the staff pages: the engine's mock upstream and connections pointing at it."""

from __future__ import annotations

from tests.llm.conftest import cloud, local, mock

__all__ = ["cloud", "local", "mock"]
