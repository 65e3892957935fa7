"""The forms admins fill for groups and limits (the console pages and `setquota` share the
checks)."""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth.models import Group

from accounts.models import Limits

# The largest values the columns hold (tokens: 64-bit; rates and slots: 32-bit).
MAX_TOKENS = 10**15
MAX_COUNT = 2_147_483_647
MAX_PATTERNS = 100
PATTERN = re.compile(r"^[^\s,\x00-\x1f\x7f]{1,200}$")
UNSET_HELP = "Empty: not set here. 0: unlimited."


def parse_patterns(text: str) -> list[str]:
    """Model patterns from text: separated by commas, spaces or new lines; each one like
    `llama3*` or `gpt-4o-mini` (fnmatch: `*`, `?`, `[...]`)."""
    patterns = list(dict.fromkeys(part for part in re.split(r"[\s,]+", text) if part))
    if len(patterns) > MAX_PATTERNS:
        raise forms.ValidationError(f"List at most {MAX_PATTERNS} model patterns.")
    for pattern in patterns:
        if not PATTERN.match(pattern):
            raise forms.ValidationError(
                f"“{pattern[:50]}” is not a model pattern: up to 200 characters, no spaces."
            )
    return patterns


class LimitsForm(forms.Form):
    """Tokens per day and month, requests per minute, generations at once, model patterns;
    each may be left unset (empty)."""

    tokens_per_day = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_TOKENS, help_text=UNSET_HELP
    )
    tokens_per_month = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_TOKENS, help_text=UNSET_HELP
    )
    requests_per_minute = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_COUNT, help_text=UNSET_HELP
    )
    concurrent = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_COUNT,
        label="Generations at once",
        help_text=UNSET_HELP,
    )
    models = forms.CharField(
        required=False,
        max_length=20_000,
        label="Models",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Patterns such as <code>llama3*</code>, separated by commas or new lines; "
        "a name without a tag also matches its <code>:latest</code>. Empty: not set here.",
    )

    @classmethod
    def for_limits(cls, values: dict[str, object], data: object = None) -> LimitsForm:
        """The form showing the limits in `values` (as `accounts.groups.limits_of` gives)."""
        initial = {**values, "models": ", ".join(values.get("models") or [])}  # type: ignore[arg-type]
        return cls(data, initial=initial)

    def clean_models(self) -> list[str] | None:
        return parse_patterns(self.cleaned_data.get("models") or "") or None

    def values(self) -> dict[str, object]:
        """The limits entered (None where not set); call after is_valid."""
        return {name: self.cleaned_data.get(name) for name in (*Limits.LIMIT_FIELDS, "models")}


class GroupNameForm(forms.Form):
    """A group's name, unique whatever its case."""

    name = forms.CharField(max_length=150, strip=True)

    def __init__(self, *args: object, group: Group | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.group = group

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not name:
            raise forms.ValidationError("Give the group a name.")
        taken = Group.objects.filter(name__iexact=name)
        if self.group is not None:
            taken = taken.exclude(pk=self.group.pk)
        if taken.exists():
            raise forms.ValidationError("A group with that name exists already.")
        return name
