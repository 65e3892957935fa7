"""Fixtures of the account tests: a real OpenID Connect provider on loopback, and the site
pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django import Settings

from tests.oidc_provider import MockProvider


@pytest.fixture
def provider(settings: Settings, db: None) -> Iterator[MockProvider]:
    """A fresh provider (its own port, key and caches here) that the site signs in with."""
    with MockProvider() as mock:
        for name, value in mock.settings(OIDC_BUTTON_LABEL="Sign in with Mock SSO").items():
            setattr(settings, name, value)
        yield mock
