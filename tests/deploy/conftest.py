"""Fixtures of the deployment tests: the API tests' mock upstream, connections and keys."""

from __future__ import annotations

from tests.api.conftest import member_key, mock, upstream

__all__ = ["member_key", "mock", "upstream"]
