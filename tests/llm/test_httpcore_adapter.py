"""Which sockets the engine's pools use: its own, or httpcore's (the public fallback) when
LIBRARY_FALLBACKS is set or the installed httpcore is not one the adapter was checked
against. Both sit behind the address check."""

from __future__ import annotations

import logging

import httpcore
import pytest

from llm.httpcore_adapter import AsyncioBackend, network_backend, uses_fallback
from llm.network import CheckedBackend


@pytest.mark.parametrize("fallbacks", [False, True])
def test_the_setting_picks_the_sockets_and_both_are_checked(settings, fallbacks: bool) -> None:
    settings.LIBRARY_FALLBACKS = fallbacks
    backend = network_backend()
    assert isinstance(backend, CheckedBackend)
    expected = httpcore.AnyIOBackend if fallbacks else AsyncioBackend
    assert type(backend.backend) is expected


def test_the_installed_httpcore_is_one_the_adapter_was_checked_against() -> None:
    assert not uses_fallback(httpcore.__version__, forced=False)


def test_another_httpcore_gets_the_fallback_with_a_log_line(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="llm.httpcore_adapter"):
        assert uses_fallback("1.1.0", forced=False)
        assert uses_fallback("0.18.0", forced=False)
        assert uses_fallback("2.0.dev1", forced=False)
        assert uses_fallback("1.1.0", forced=False)  # logged once
    assert not uses_fallback("1.0.10", forced=False)
    assert caplog.text.count("outside the checked range >=1.0,<1.1") == 3
    assert "httpcore 1.1.0 is outside" in caplog.text
