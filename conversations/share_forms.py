"""The share dialog's form and the expiry form of the Shared links page."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from conversations.models import Share

DURATIONS = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
EXPIRY_CHOICES = [
    ("never", "Never"),
    ("1h", "In 1 hour"),
    ("1d", "In 1 day"),
    ("7d", "In 7 days"),
    ("30d", "In 30 days"),
    ("date", "At the end of a date"),
]


class ExpiryForm(forms.Form):
    """When a link stops opening: never, after a while, or at the end of a chosen day."""

    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="never", label="Expires")
    expires_on = forms.DateField(
        required=False,
        label="Date",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="With “At the end of a date”: the link stops opening at the end of this day.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("expires") == "date":
            day = data.get("expires_on")
            if day is None and "expires_on" not in self.errors:
                self.add_error("expires_on", "Choose the date the link stops opening.")
            elif day is not None and day < timezone.localdate():
                self.add_error("expires_on", "Choose today or a later date.")
        return data

    def expires_at(self) -> datetime | None:
        """The moment the link stops opening (None: never)."""
        choice = self.cleaned_data["expires"]
        if choice == "never":
            return None
        if choice in DURATIONS:
            return timezone.now() + DURATIONS[choice]
        return end_of(self.cleaned_data["expires_on"])


def end_of(day: date) -> datetime:
    """The end of `day` in the site's time zone."""
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))


class ShareForm(ExpiryForm):
    """Who may open the link, what it shows, when it stops opening."""

    visibility = forms.ChoiceField(
        choices=Share.Visibility.choices,
        initial=Share.Visibility.TEAM,
        widget=forms.RadioSelect,
        label="Who can open it",
    )
    mode = forms.ChoiceField(
        choices=Share.Mode.choices,
        initial=Share.Mode.SNAPSHOT,
        widget=forms.RadioSelect,
        label="What it shows",
    )
    include_system_prompt = forms.BooleanField(required=False, label="Include the system prompt")

    field_order = ["visibility", "mode", "expires", "expires_on", "include_system_prompt"]

    def __init__(self, *args: Any, anyone_allowed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not anyone_allowed:
            self.fields["visibility"].choices = [
                (Share.Visibility.TEAM, Share.Visibility.TEAM.label)
            ]

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `shares.create`."""
        return {
            "visibility": self.cleaned_data["visibility"],
            "mode": self.cleaned_data["mode"],
            "expires_at": self.expires_at(),
            "include_system_prompt": self.cleaned_data["include_system_prompt"],
        }


class ShareFilter(forms.Form):
    """The Shared links page's filter: every link, or only those that still open."""

    show = forms.ChoiceField(
        choices=[("all", "All links"), ("active", "Hide revoked and expired")],
        required=False,
        label="Show",
    )

    def hides_inactive(self) -> bool:
        return self.is_valid() and self.cleaned_data.get("show") == "active"
