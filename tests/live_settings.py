"""Settings of the Daphne the tests start: the production settings, and the suite's fast
password hasher as a fallback so accounts the tests create can sign in through it."""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]
