"""One-time sign-in links for admins: the way in when the identity provider is down.

`manage.py signinlink USERNAME` makes one. A link names the account and when it expires, and
is signed with SECRET_KEY; it also carries the account's last sign-in time, which signing in
changes, so it works once. Only active admins get one.
"""

from __future__ import annotations

import time

from django.core import signing

from accounts.models import User

SALT = "accounts.signin_links"
DEFAULT_MINUTES = 15


def make(user: User, minutes: int = DEFAULT_MINUTES) -> str:
    """A link token for `user`, good for `minutes` and one sign-in."""
    payload = {"u": user.pk, "l": _last_login(user), "e": int(time.time()) + minutes * 60}
    return signing.dumps(payload, salt=SALT, compress=True)


def account(token: str) -> User | None:
    """The admin `token` signs in, or None if it is forged, expired or used."""
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("e", 0) < time.time():
        return None
    user = User.objects.filter(pk=payload.get("u")).first()
    if user is None or not user.is_admin or payload.get("l") != _last_login(user):
        return None
    return user


def _last_login(user: User) -> str:
    return user.last_login.isoformat() if user.last_login else ""
