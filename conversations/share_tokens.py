"""The secret in a share link: made, found again by its digest, sealed for the owner.

A token is 32 bytes from `secrets` (256 bits), URL-safe base64 without padding (43
characters). The database keeps its SHA-256 digest, which is what a link is looked up by,
and a sealed copy (Fernet under a key derived from SECRET_KEY for this purpose only), so
that the owner can copy the link again from the Shared links page.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from cryptography.fernet import InvalidToken

from chatsite.sealing import fernet_for

SEALING = "conversations.Share.token"
TOKEN_BYTES = 32
TOKEN_LENGTH = 43  # len(secrets.token_urlsafe(TOKEN_BYTES))
_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_well_formed(token: str) -> bool:
    """Whether `token` could be one of ours (anything else is not looked up at all)."""
    return bool(_SHAPE.fullmatch(token))


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def seal(token: str) -> str:
    return fernet_for(SEALING).encrypt(token.encode()).decode()


def unseal(sealed: str) -> str | None:
    """The token, or None when it cannot be opened (SECRET_KEY changed since)."""
    try:
        return fernet_for(SEALING).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None
