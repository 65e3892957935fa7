"""The audit page's filters: who (actor), what (action) and on what (target)."""

from __future__ import annotations

import re

from django import forms
from django.core.validators import RegexValidator
from django.db.models import QuerySet

from audit import actions
from audit.models import Entry

# "user:12": a target by its type and id (what the page's links use).
TYPED_TARGET = re.compile(r"^(?P<type>[a-z_]{1,64}):(?P<id>[\w-]{1,64})$")


class EntryFilter(forms.Form):
    """Filters from the query string; every field may be left empty."""

    actor = forms.CharField(required=False, max_length=150, label="Who")
    action = forms.CharField(
        required=False,
        max_length=64,
        label="Action",
        validators=[RegexValidator(actions.NAME_OR_PREFIX, "Give an action such as account.role.")],
        widget=forms.Select(choices=actions.choices()),
    )
    target = forms.CharField(
        required=False,
        max_length=255,
        label="Target",
        help_text="A name (any part of it), or type:id such as user:12.",
    )

    def entries(self) -> QuerySet[Entry]:
        """The entries that match, newest first (call only once the form is valid)."""
        found = Entry.objects.all()
        data = self.cleaned_data
        if data["actor"]:
            found = found.filter(actor_name__iexact=data["actor"])
        if action := data["action"]:
            if "." in action:
                found = found.filter(action=action)
            else:
                found = found.filter(action__startswith=f"{action}.")
        if target := data["target"]:
            if typed := TYPED_TARGET.match(target):
                found = found.filter(target_type=typed["type"], target_id=typed["id"])
            else:
                found = found.filter(target_label__icontains=target)
        return found.order_by("-when", "-id")
