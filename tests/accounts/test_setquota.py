"""`manage.py setquota`: limits for a person or a group from the command line, printing the
effective result; bad input is a clear error, never a traceback."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts.models import GroupLimits, PersonLimits, User
from audit.models import Entry
from tests.conftest import make_user
from usage.limits import Limit, resolve

pytestmark = pytest.mark.django_db

ROLES = {
    "member": {"requests_per_minute": 60, "concurrent": 4, "tokens_per_day": 0},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}


def setquota(*args: str) -> str:
    out = StringIO()
    call_command("setquota", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def zed() -> User:
    return make_user("zed")


@override_settings(QUOTAS=ROLES)
def test_a_persons_limits_are_set_and_the_effective_ones_printed(zed: User) -> None:
    out = setquota("zed", "--tokens-per-day", "5000", "--models", "llama3*,qwen3:8b")
    assert resolve(zed).tokens_per_day == Limit(5000, "person")
    assert "tokens per day: 5000 (person)" in out
    assert "requests per minute: 60 (role default)" in out
    assert "models: llama3*, qwen3:8b (person)" in out
    out = setquota("zed", "--concurrent", "0")  # the others are kept
    assert "tokens per day: 5000 (person)" in out
    assert "generations at once: unlimited (person)" in out
    entries = Entry.objects.filter(action="limits.changed", target_label="zed")
    assert entries.count() == 2


@override_settings(QUOTAS=ROLES)
def test_unset_and_clear(zed: User) -> None:
    setquota("zed", "--tokens-per-day", "5", "--requests-per-minute", "9")
    out = setquota("zed", "--tokens-per-day", "unset")
    assert "requests per minute: 9 (person)" in out
    assert "tokens per day: unlimited (role default)" in out
    setquota("zed", "--clear")
    assert not PersonLimits.objects.exists()
    out = setquota("zed", "--clear", "--tokens-per-month", "100")
    assert PersonLimits.objects.get().values()["tokens_per_month"] == 100
    assert "tokens per month: 100 (person)" in out


def test_a_group_is_created_when_missing_and_its_limits_printed(zed: User) -> None:
    out = setquota("--group", "science", "--tokens-per-month", "90000", "--models", "gpt-*")
    science = Group.objects.get(name="science")
    limits = GroupLimits.objects.get(group=science)
    assert (limits.tokens_per_month, limits.models) == (90000, ["gpt-*"])
    assert "group science (0 members):" in out and "tokens_per_month: 90000" in out
    assert "tokens_per_day: not set" in out
    science.user_set.add(zed)
    assert resolve(zed).tokens_per_month == Limit(90000, "group science")
    setquota("--group", "SCIENCE", "--models", "")  # found whatever the case; models unset
    assert GroupLimits.objects.get().models is None
    assert Group.objects.count() == 1
    actions = list(Entry.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["group.created", "limits.changed", "limits.changed"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "name either a USERNAME or a --group NAME"),
        (("zed", "--group", "x"), "name either a USERNAME or a --group NAME"),
        (("nobody", "--concurrent", "1"), "no user called 'nobody'"),
        (("zed", "--tokens-per-day", "-5"), "--tokens-per-day: Ensure this value is greater"),
        (("zed", "--concurrent", "many"), "--concurrent: Enter a whole number."),
        (("zed", "--models", "a b\x01"), "--models:"),
        (("--group", " "), "a group name has 1 to 150 characters"),
    ],
)
def test_bad_input_is_a_command_error(zed: User, args: tuple[str, ...], error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("*", r"\*")):
        setquota(*args)
    assert not PersonLimits.objects.exists() and not Group.objects.exists()
