"""Encryption at rest for connection secrets: Fernet with a key derived from SECRET_KEY."""

from __future__ import annotations

from cryptography.fernet import InvalidToken

from chatsite.sealing import fernet_for

PURPOSE = "llm.Connection.api_key"


def encrypt(plain: str) -> str:
    """The token stored in the database for `plain` ("" stays "")."""
    if not plain:
        return ""
    return fernet_for(PURPOSE).encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The plain secret; raises ValueError when SECRET_KEY changed since it was stored."""
    if not token:
        return ""
    try:
        return fernet_for(PURPOSE).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "the stored API key cannot be decrypted (was SECRET_KEY changed?)"
        ) from None
