"""Effective limits: the person's own over their groups' (most generous) over the role's
defaults; model access; an API key narrows and never widens; changes reach the cache."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import override_settings

from accounts.models import ApiKey, GroupLimits, PersonLimits, User
from chatsite.redis import get_redis
from tests.conftest import make_user
from usage import limits
from usage.limits import Limit, effective_limits, matches, may_use_model, resolve

pytestmark = pytest.mark.django_db

ROLES = {
    "member": {
        "requests_per_minute": 60,
        "concurrent": 4,
        "tokens_per_day": 1000,
        "tokens_per_month": 20000,
    },
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}


def group(name: str, *members: User, **values: object) -> Group:
    found = Group.objects.create(name=name)
    found.user_set.add(*members)
    if values:
        GroupLimits.objects.create(group=found, **values)
    return found


@pytest.fixture
def person() -> User:
    return make_user("mia")


@override_settings(QUOTAS=ROLES)
def test_without_groups_or_own_limits_the_role_defaults_apply(person: User) -> None:
    effective = resolve(person)
    assert effective.tokens_per_day == Limit(1000, "role default")
    assert effective.tokens_per_month == Limit(20000, "role default")
    assert effective.requests_per_minute == Limit(60, "role default")
    assert effective.concurrent == Limit(4, "role default")
    assert effective.models == () and effective.allows("anything:latest")
    # A role without a monthly default has none (0, unlimited).
    boss = make_user("ada", role=User.Role.ADMIN)
    assert resolve(boss).tokens_per_month == Limit(0, "role default")


@override_settings(QUOTAS=ROLES)
def test_a_group_value_replaces_the_role_default_and_the_most_generous_group_wins(
    person: User,
) -> None:
    group("interns", person, tokens_per_day=50, requests_per_minute=5)
    group("science", person, tokens_per_day=5000, requests_per_minute=0)
    group("idle", person)  # no limits row: contributes nothing
    effective = resolve(person)
    assert effective.tokens_per_day == Limit(5000, "group science")
    # 0 (unlimited) is the most generous of all.
    assert effective.requests_per_minute == Limit(0, "group science")
    # Not set by any group: the role's.
    assert effective.concurrent == Limit(4, "role default")


@override_settings(QUOTAS=ROLES)
def test_the_persons_own_limit_wins_even_when_less_generous(person: User) -> None:
    group("science", person, tokens_per_day=5000, concurrent=10)
    PersonLimits.objects.create(user=person, tokens_per_day=10)
    effective = resolve(person)
    assert effective.tokens_per_day == Limit(10, "person")
    assert effective.concurrent == Limit(10, "group science")


@override_settings(QUOTAS=ROLES)
def test_a_group_a_person_is_not_in_does_not_count(person: User) -> None:
    other = make_user("zed")
    group("science", other, tokens_per_day=5000)
    assert resolve(person).tokens_per_day == Limit(1000, "role default")


def test_model_access_is_the_union_of_the_groups_lists(person: User) -> None:
    group("a", person, models=["llama3*"])
    group("b", person, models=["qwen3:8b", "llama3*"])
    group("c", person, tokens_per_day=5)  # no list: does not open every model
    effective = resolve(person)
    assert effective.models == ("llama3*", "qwen3:8b")
    assert effective.models_source == "groups a, b"
    assert effective.allows("llama3.2:latest") and effective.allows("qwen3:8b")
    assert not effective.allows("qwen3:32b") and not effective.allows("gpt-4o")


def test_the_persons_own_model_list_replaces_the_groups(person: User) -> None:
    group("a", person, models=["llama3*"])
    PersonLimits.objects.create(user=person, models=["gpt-4o-mini"])
    effective = resolve(person)
    assert (effective.models, effective.models_source) == (("gpt-4o-mini",), "person")
    assert effective.allows("gpt-4o-mini") and not effective.allows("llama3.2:latest")


def test_an_empty_own_list_does_not_shut_every_model(person: User) -> None:
    group("a", person, models=["llama3*"])
    PersonLimits.objects.create(user=person, models=[], tokens_per_day=3)
    assert resolve(person).models == ("llama3*",)


def test_a_key_narrows_model_access_and_never_widens_it(person: User) -> None:
    group("a", person, models=["llama3*"])
    narrow, _ = ApiKey.issue(person, "narrow", allowed_models=["llama3.2:latest"])
    wide, _ = ApiKey.issue(person, "wide", allowed_models=["gpt-4o-mini", "llama3.1:8b"])
    assert may_use_model(person, "llama3.2:latest", narrow)
    assert not may_use_model(person, "llama3.1:8b", narrow)  # the owner may; the key not
    assert may_use_model(person, "llama3.1:8b", wide)
    assert not may_use_model(person, "gpt-4o-mini", wide)  # the key lists it; the owner may not
    assert not may_use_model(person, "gpt-4o-mini")


@pytest.mark.parametrize(
    ("model", "pattern", "expected"),
    [
        ("llama3.2:latest", "llama3*", True),
        ("llama3.2:latest", "llama3.2", True),  # no tag: its :latest
        ("llama3.2:1b", "llama3.2", False),
        ("llama3.2:1b", "llama3.2:*", True),
        ("Llama3.2:latest", "llama3*", False),  # case counts
        ("gpt-4o-mini", "gpt-4o", False),
        ("gpt-4o-mini", "gpt-4o*", True),
    ],
)
def test_model_patterns(model: str, pattern: str, expected: bool) -> None:
    assert matches(model, pattern) is expected


@pytest.mark.django_db(transaction=True)
@override_settings(QUOTAS=ROLES)
def test_a_change_reaches_the_cache_at_once_in_this_process(person: User) -> None:
    assert effective_limits(person).tokens_per_day.value == 1000
    science = group("science", tokens_per_day=7000)
    science.user_set.add(person)  # membership: m2m_changed
    assert effective_limits(person).tokens_per_day == Limit(7000, "group science")
    science.limits.tokens_per_day = 8000
    science.limits.save()
    assert effective_limits(person).tokens_per_day.value == 8000
    PersonLimits.objects.create(user=person, tokens_per_day=9)
    assert effective_limits(person).tokens_per_day.value == 9
    person.limits.delete()
    science.delete()
    assert effective_limits(person).tokens_per_day == Limit(1000, "role default")


@pytest.mark.django_db(transaction=True)
def test_a_committed_change_publishes_a_new_limits_version(person: User) -> None:
    before = limits.current_version()
    science = group("science", person, tokens_per_day=7000)
    first = limits.current_version()
    assert first != before
    assert resolve(person).version == first
    science.user_set.remove(person)
    second = limits.current_version()
    assert second not in (before, first)
    person.set_role(User.Role.ADMIN)  # role defaults change with the role
    assert get_redis().get(limits.VERSION_KEY) not in (before, first, second)


class RolledBack(Exception):
    pass


@pytest.mark.django_db(transaction=True)
@override_settings(QUOTAS=ROLES)
def test_limits_read_inside_a_transaction_that_rolls_back_are_not_cached(person: User) -> None:
    with pytest.raises(RolledBack), transaction.atomic():
        PersonLimits.objects.create(user=person, tokens_per_day=5)
        assert effective_limits(person).tokens_per_day == Limit(5, "person")
        raise RolledBack
    assert effective_limits(person).tokens_per_day == Limit(1000, "role default")
