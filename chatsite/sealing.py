"""Keys for sealing secrets at rest: one Fernet key per purpose, derived from SECRET_KEY.

HKDF with the purpose as its label, so that a key opens what it was made for and nothing
else (a connection's API key, a share link's token, ...).
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def fernet_for(purpose: str) -> Fernet:
    """The Fernet key that seals `purpose`'s secrets under the current SECRET_KEY."""
    return _fernet(settings.SECRET_KEY, purpose)


@cache
def _fernet(secret_key: str, purpose: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"chatsite {purpose}".encode()
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))
