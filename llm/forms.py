"""The admin form for a connection (the API key is write-only)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.utils.html import escape

from llm.addresses import AddressRefused, check_host
from llm.models import Connection, same_server

KEY_FOLLOWS_SERVER = (
    "Changing the server (scheme, host or port) of the base URL removes the stored key "
    "unless you enter it again here."
)


class ConnectionForm(forms.ModelForm):
    """Add or edit a connection; a blank key keeps the stored one while the base URL points
    at the same server, and drops it when the URL moves to another (`key_removed`)."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)
    allowed_models_text = forms.CharField(
        label="Allowed models",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One name or pattern (llama*) per line; empty allows every model.",
    )

    class Meta:
        model = Connection
        fields = ["name", "kind", "base_url", "prefix", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_models_text"].initial = "\n".join(self.instance.allowed_models)
        self.stored_base_url = self.instance.base_url if self.instance.pk else ""
        self.key_removed = False
        if self.instance.pk:
            # field.html renders help text unescaped; the hint comes from an admin's input.
            hint = escape(self.instance.api_key_hint)
            self.fields[
                "api_key"
            ].help_text = f"Stored: {hint}. Leave blank to keep it. {KEY_FOLLOWS_SERVER}"
            base_url = self.fields["base_url"]
            base_url.help_text = f"{base_url.help_text} {KEY_FOLLOWS_SERVER}"

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip().rstrip("/")
        if urlsplit(url).username is not None:
            # The URL shows up on admin pages and in the log; secrets belong in API key.
            raise forms.ValidationError(
                "Leave the user name and password out of the URL; put a token in API key."
            )
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            return url  # the model's validator explains
        try:
            check_host(parts.hostname or "", port)
        except AddressRefused as exc:
            raise forms.ValidationError(f"This server is not allowed: {exc}.") from None
        return url

    def clean_allowed_models_text(self) -> list[str]:
        text = self.cleaned_data["allowed_models_text"]
        return [name for name in re.split(r"[\s,]+", text) if name]

    def save(self, commit: bool = True) -> Connection:
        connection = super().save(commit=False)
        connection.allowed_models = self.cleaned_data["allowed_models_text"]
        if self.cleaned_data["clear_api_key"]:
            connection.api_key = ""
        elif self.cleaned_data["api_key"]:
            connection.api_key = self.cleaned_data["api_key"]
        elif self.stored_base_url and not same_server(self.stored_base_url, connection.base_url):
            # The key was issued for the old server: never hand it to the new one.
            self.key_removed = bool(connection.api_key_encrypted)
            connection.api_key = ""
        if commit:
            connection.save()
        return connection
