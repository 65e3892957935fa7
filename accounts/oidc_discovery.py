"""The identity provider as this site knows it: its discovery document and its signing keys,
fetched from the provider and cached in each process.

The document (`OIDC_ISSUER` + `/.well-known/openid-configuration`) names the endpoints and the
issuer; it is kept for DISCOVERY_TTL seconds, and kept past that while the provider cannot be
reached. The keys come from its `jwks_uri` through PyJWT's `PyJWKClient`, which caches the key
set for JWKS_TTL seconds and fetches it again when a token names a key it does not hold (the
provider rotated its keys).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DISCOVERY_TTL = 3600.0
JWKS_TTL = 300.0
# Algorithms an ID token may be signed with: public-key ones only, never HS* or "none".
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")

_documents: dict[str, tuple[float, dict[str, Any]]] = {}
_key_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


class ProviderUnavailable(Exception):
    """The identity provider could not be reached, or answered with something unusable."""


def configured() -> bool:
    """Whether single sign-on is set up (an issuer and a client id)."""
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


def metadata() -> dict[str, Any]:
    """The provider's discovery document, from the cache while it is fresh."""
    issuer = settings.OIDC_ISSUER
    cached = _documents.get(issuer)
    if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1]
    try:
        document = _fetch(issuer)
    except ProviderUnavailable:
        if cached is not None:
            return cached[1]  # a provider briefly down: the endpoints have not moved
        raise
    _documents[issuer] = (time.monotonic(), document)
    return document


def _fetch(issuer: str) -> dict[str, Any]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"discovery at {url} failed: {exc}") from exc
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"discovery at {url} did not answer a JSON object")
    if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ProviderUnavailable(
            f"discovery at {url} names issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    missing = [name for name in REQUIRED_ENDPOINTS if not isinstance(document.get(name), str)]
    if missing:
        raise ProviderUnavailable(f"discovery at {url} lacks {', '.join(missing)}")
    return document


def endpoint(name: str) -> str:
    """One of the discovered endpoints ("" when the provider has none of that name)."""
    value = metadata().get(name)
    return value if isinstance(value, str) else ""


def algorithms() -> list[str]:
    """The public-key algorithms the provider signs ID tokens with (RS256 when it says none)."""
    offered = metadata().get("id_token_signing_alg_values_supported")
    if not isinstance(offered, list):
        return ["RS256"]
    return [alg for alg in offered if alg in ASYMMETRIC] or ["RS256"]


def signing_key(token: str) -> jwt.PyJWK:
    """The provider's key that `token`'s header names (jwt.PyJWTError if it has none)."""
    try:
        return _key_client(endpoint("jwks_uri")).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        raise ProviderUnavailable(f"the provider's keys could not be fetched: {exc}") from exc


@receiver(setting_changed)
def _forget(setting: str, **kwargs: object) -> None:
    """Another provider (tests change the settings): nothing cached of the last one holds."""
    if setting.startswith("OIDC_"):
        with _lock:
            _documents.clear()
            _key_clients.clear()


def _key_client(uri: str) -> jwt.PyJWKClient:
    with _lock:
        client = _key_clients.get(uri)
        if client is None:
            client = jwt.PyJWKClient(uri, lifespan=JWKS_TTL, timeout=settings.OIDC_TIMEOUT)
            _key_clients[uri] = client
        return client
