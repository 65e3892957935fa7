"""Driving a sign-in through the provider with Django's test client: the client asks the site
to start, the provider's authorize endpoint is called over HTTP as a browser would, and its
redirect back is followed to the site's callback."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from tests.oidc_provider import MockProvider


def start(client: Client, next_url: str = "") -> str:
    """The provider URL the site sends the person to."""
    response = client.get(reverse("accounts:oidc_login"), {"next": next_url} if next_url else {})
    assert response.status_code == 302, response.content
    return response["Location"]


def authorize(url: str) -> str:
    """The site's callback path and query the provider sends the person back to."""
    answer = httpx.get(url)
    assert answer.status_code == 302, answer.text
    parts = urlsplit(answer.headers["location"])
    return f"{parts.path}?{parts.query}"


def sign_in(client: Client, provider: MockProvider, username: str) -> HttpResponse:
    """The site's answer to the callback once `username` signed in at the provider."""
    provider.signed_in = username
    return client.get(authorize(start(client)))


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
