"""Upstream connections configured by admins."""

from __future__ import annotations

import base64
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from django.db import models

from llm import crypto
from llm.addresses import validate_base_url


class Connection(models.Model):
    """An upstream model server (Ollama or OpenAI-compatible) the engine may call."""

    class Kind(models.TextChoices):
        OLLAMA = "ollama", "Ollama"
        OPENAI = "openai", "OpenAI-compatible"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OLLAMA)
    base_url = models.CharField(
        max_length=500,
        validators=[validate_base_url],
        help_text="Ollama: http://host:11434. OpenAI-compatible: the URL ending in /v1.",
    )
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Upstream model names or patterns (llama*); empty allows every model.",
    )
    prefix = models.CharField(
        max_length=32, blank=True, default="", help_text='Prepended to model names, e.g. "lab/".'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        _invalidate_catalog()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        _invalidate_catalog()
        return result

    @property
    def api_key(self) -> str:
        """The plain API key ("" when none)."""
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = crypto.encrypt(value)
        self.api_key_last4 = value[-4:] if len(value) >= 8 else ""

    @property
    def api_key_hint(self) -> str:
        """What a page may show of the key."""
        if not self.api_key_encrypted:
            return "none"
        return f"…{self.api_key_last4}" if self.api_key_last4 else "set"

    @property
    def root_url(self) -> str:
        """The base URL without a trailing slash, and without any user:password@ in it
        (those go in a header, see `auth_headers`, and never into a message)."""
        parts = urlsplit(self.base_url.rstrip("/"))
        if parts.username is None and parts.password is None:
            return parts.geturl()
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def allows(self, upstream_name: str) -> bool:
        """True when the allowlist (empty = everything) admits this upstream model."""
        if not self.allowed_models:
            return True
        return any(fnmatchcase(upstream_name, pattern) for pattern in self.allowed_models)

    def public_name(self, upstream_name: str) -> str:
        """The catalog name people use for an upstream model."""
        return f"{self.prefix}{upstream_name}"

    def upstream_name(self, public_name: str) -> str:
        """The inverse of `public_name`."""
        return public_name.removeprefix(self.prefix)

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate the engine to this upstream: its API key, or else the
        user and password of a base URL such as OLLAMA_BASE_URL=http://user:pass@host."""
        key = self.api_key
        if key:
            return {"Authorization": f"Bearer {key}"}
        parts = urlsplit(self.base_url)
        if parts.username is None and parts.password is None:
            return {}
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}


def same_server(url: str, other: str) -> bool:
    """Whether two base URLs reach the same server: scheme, host and port (the default
    port of the scheme when none is written)."""
    return _server(url) == _server(other)


def _server(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").rstrip("."), port if port is not None else default


def _invalidate_catalog() -> None:
    from llm.catalog import invalidate  # the catalog imports this module

    invalidate()
