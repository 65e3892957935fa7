"""Encryption at rest for connection secrets: Fernet with a key derived from SECRET_KEY."""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@cache
def _fernet(secret_key: str) -> Fernet:
    # HKDF with a purpose label, so this key is useless for anything but connection secrets.
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chatsite llm.Connection.api_key"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plain: str) -> str:
    """The token stored in the database for `plain` ("" stays "")."""
    if not plain:
        return ""
    return _fernet(settings.SECRET_KEY).encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The plain secret; raises ValueError when SECRET_KEY changed since it was stored."""
    if not token:
        return ""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "the stored API key cannot be decrypted (was SECRET_KEY changed?)"
        ) from None
