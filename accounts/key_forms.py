"""The form that creates an API key."""

from __future__ import annotations

from datetime import date, datetime, time

from django import forms
from django.utils import timezone


class KeyForm(forms.Form):
    """A name, an optional expiry date, an optional list of allowed models and an optional
    daily token budget of the key's own."""

    name = forms.CharField(
        max_length=100,
        help_text="Say where it is used, e.g. “laptop scripts” or “CI”.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The key stops working at the end of this day.",
    )
    models = forms.MultipleChoiceField(
        required=False,
        label="Allowed models",
        widget=forms.CheckboxSelectMultiple,
        help_text="Optional. None ticked: every model you may use.",
    )
    tokens_per_day = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10**12,
        label="Tokens per day",
        help_text="Optional. This key's own daily budget, on top of yours: it can only "
        "stop the key sooner.",
    )

    def __init__(self, *args: object, model_names: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = [(name, name) for name in model_names]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

    def clean_expires_on(self) -> date | None:
        expires_on = self.cleaned_data.get("expires_on")
        if expires_on is not None and expires_on <= timezone.localdate():
            raise forms.ValidationError("Choose a date after today.")
        return expires_on

    def expires_at(self) -> datetime | None:
        """The end of the chosen day, in the site's time zone."""
        expires_on = self.cleaned_data.get("expires_on")
        if expires_on is None:
            return None
        return timezone.make_aware(datetime.combine(expires_on, time(23, 59, 59)))
