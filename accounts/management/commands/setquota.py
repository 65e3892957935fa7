"""`manage.py setquota USERNAME|--group NAME [...]`: set a person's or a group's limits from
the command line (for automation), and print the effective result."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts import groups as teams
from accounts.limit_forms import LimitsForm
from accounts.models import User
from audit import services as audit
from usage import limits

# Option name -> limit name; each takes a number (0 = unlimited) or "unset".
NUMBERS = {
    "tokens_per_day": "--tokens-per-day",
    "tokens_per_month": "--tokens-per-month",
    "requests_per_minute": "--requests-per-minute",
    "concurrent": "--concurrent",
}
UNSET = "unset"


class Command(BaseCommand):
    help = (
        "Set the limits of a person (USERNAME) or a group (--group NAME, created if missing) "
        "and print the result. Numbers: 0 is unlimited, 'unset' removes the value (the groups' "
        "or role's applies). --models takes comma-separated patterns (llama3*), '' to unset. "
        "--clear removes every limit set before applying the others."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", help="the person to set limits for")
        parser.add_argument("--group", help="the group to set limits for, instead of a person")
        for option in NUMBERS.values():
            parser.add_argument(option, metavar="N|unset")
        parser.add_argument("--models", metavar="PATTERNS", help="e.g. 'llama3*,gpt-4o-mini'")
        parser.add_argument("--clear", action="store_true", help="remove all limits set first")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["username"]) == bool(options["group"]):
            raise CommandError("name either a USERNAME or a --group NAME")
        values = _values(options)
        with transaction.atomic():
            owner = _owner(options)
            before, after = teams.set_limits(owner, values)
            if before != after:
                audit.record(None, "limits.changed", owner, before=before, after=after)
        self.stdout.write(_report(owner))


def _values(options: dict[str, Any]) -> dict[str, object]:
    """The limits to set, checked as the console's form checks them."""
    given = {name: options[name] for name in NUMBERS if options[name] is not None}
    if options["models"] is not None:
        given["models"] = options["models"]
    data = {name: "" if value == UNSET else value for name, value in given.items()}
    form = LimitsForm(data)
    if not form.is_valid():
        problems = "; ".join(
            f"{NUMBERS.get(name, '--' + name)}: {' '.join(errors)}"
            for name, errors in form.errors.items()
        )
        raise CommandError(problems)
    values = dict(teams.UNSET) if options["clear"] else {}
    values.update({name: form.cleaned_data[name] for name in given})
    return values


def _owner(options: dict[str, Any]) -> Group | User:
    if options["username"]:
        try:
            return User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user called {options['username']!r}") from None
    name = options["group"].strip()
    if not name or len(name) > 150:
        raise CommandError("a group name has 1 to 150 characters")
    group = Group.objects.filter(name__iexact=name).first()
    if group is None:
        group = teams.create_group(name)
        audit.record(None, "group.created", group, after=teams.snapshot(group))
    return group


def _report(owner: Group | User) -> str:
    """What applies now: a person's effective limits with their sources, or a group's own."""
    if isinstance(owner, Group):
        lines = [f"group {owner.name} ({owner.user_set.count()} members):"]
        for name, value in teams.limits_of(owner).items():
            lines.append(f"  {name}: {_shown(value)}")
        return "\n".join(lines)
    effective = limits.resolve(owner)
    lines = [f"{owner.username} ({owner.role}):"]
    for label, limit in effective.labelled():
        value = limit.value or "unlimited"
        lines.append(f"  {label.lower()}: {value} ({limit.source})")
    models = ", ".join(effective.models) or "every model"
    lines.append(f"  models: {models} ({effective.models_source})")
    return "\n".join(lines)


def _shown(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, list):
        return ", ".join(value)
    return "unlimited" if value == 0 else str(value)
