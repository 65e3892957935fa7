"""The secret in a share link: made, found again by its digest, sealed for the owner.

A token is 32 bytes from `secrets` (256 bits), URL-safe base64 without padding (43
characters). The database keeps its SHA-256 digest, which is what a link is looked up by,
and a sealed copy (Fernet under a key derived from SECRET_KEY for this purpose only), so
that the owner can copy the link again from the Shared links page.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

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
    return _fernet(settings.SECRET_KEY).encrypt(token.encode()).decode()


def unseal(sealed: str) -> str | None:
    """The token, or None when it cannot be opened (SECRET_KEY changed since)."""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None


@cache
def _fernet(secret_key: str) -> Fernet:
    # HKDF with a purpose label: this key opens share tokens and nothing else.
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chatsite conversations.Share.token"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))
