"""The admin form for a connection (the API key is write-only)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.utils.html import escape

from llm.models import Connection


class ConnectionForm(forms.ModelForm):
    """Add or edit a connection; a blank key keeps the stored one."""

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
        if self.instance.pk:
            # field.html renders help text unescaped; the hint comes from an admin's input.
            hint = escape(self.instance.api_key_hint)
            self.fields["api_key"].help_text = f"Stored: {hint}. Leave blank to keep it."

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip().rstrip("/")
        if urlsplit(url).username is not None:
            # The URL shows up in error messages people see; secrets belong in API key.
            raise forms.ValidationError(
                "Leave the user name and password out of the URL; put a token in API key."
            )
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
        if commit:
            connection.save()
        return connection
