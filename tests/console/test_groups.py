"""The Groups pages: admins create groups with limits, fill them, change and delete them;
every change is in the audit log, and a group's limits become its members' effective ones."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.models import GroupLimits, User
from audit.models import Entry
from tests.conftest import make_user
from usage.limits import Limit, resolve

pytestmark = pytest.mark.django_db


def entries(action: str) -> list[Entry]:
    return list(Entry.objects.filter(action=action).order_by("pk"))


def test_members_cannot_open_or_change_groups(member_client: Client) -> None:
    science = Group.objects.create(name="science")
    assert member_client.get(reverse("console:groups")).status_code == 403
    assert member_client.post(reverse("console:add_group"), {"name": "x"}).status_code == 403
    response = member_client.post(
        reverse("console:group_members", args=[science.pk]), {"username": "mia"}
    )
    assert response.status_code == 403
    assert not science.user_set.exists() and Group.objects.count() == 1


def test_an_admin_creates_a_group_with_limits(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("console:add_group"),
        {"name": "science", "tokens_per_day": "5000", "models": "llama3*, qwen3:8b"},
    )
    science = Group.objects.get(name="science")
    assert response.status_code == 302 and response["Location"] == reverse(
        "console:group", args=[science.pk]
    )
    limits = GroupLimits.objects.get(group=science)
    assert (limits.tokens_per_day, limits.tokens_per_month) == (5000, None)
    assert limits.models == ["llama3*", "qwen3:8b"]
    [created] = entries("group.created")
    assert created.target_label == "science" and created.actor_name == "ada"
    assert created.after["limits"]["tokens_per_day"] == 5000


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("tokens_per_day", "-1", "greater than or equal to 0"),
        ("tokens_per_day", "lots", "Enter a whole number"),
        ("concurrent", "99999999999", "less than or equal to"),
        ("models", "llama3 *\x07", "is not a model pattern"),
        ("name", "", "This field is required"),
    ],
)
def test_bad_group_input_is_refused_with_a_message(
    admin_client: Client, field: str, value: str, error: str
) -> None:
    data = {"name": "science", field: value}
    response = admin_client.post(reverse("console:add_group"), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Group.objects.exists()


def test_group_names_are_unique_whatever_their_case(admin_client: Client) -> None:
    Group.objects.create(name="Science")
    response = admin_client.post(reverse("console:add_group"), {"name": "science"})
    assert "A group with that name exists already." in response.content.decode()


def test_the_groups_page_lists_members_and_limits(admin_client: Client) -> None:
    science = Group.objects.create(name="science")
    GroupLimits.objects.create(group=science, tokens_per_day=0, models=["llama3*"])
    science.user_set.add(make_user("zed"), make_user("yan"))
    Group.objects.create(name="idle")
    text = admin_client.get(reverse("console:groups")).content.decode()
    row = text[text.index(f'id="group-{science.pk}"') :]
    row = row[: row.index("</tr>")]
    assert ">science</a>" in row and "<td>2</td>" in row
    assert "unlimited" in row and "llama3*" in row and "not set" in row
    assert "idle" in text


def test_an_admin_adds_and_removes_members(admin_client: Client) -> None:
    science = Group.objects.create(name="science")
    zed = make_user("zed")
    url = reverse("console:group_members", args=[science.pk])
    admin_client.post(url, {"username": "ZED"})
    assert list(science.user_set.all()) == [zed]
    again = admin_client.post(url, {"username": "zed"}, follow=True)
    assert "zed is in science already." in again.content.decode()
    nobody = admin_client.post(url, {"username": "nobody"}, follow=True)
    assert "Nobody is called “nobody”." in nobody.content.decode()
    page = admin_client.get(reverse("console:group", args=[science.pk])).content.decode()
    assert f'id="member-{zed.pk}"' in page
    admin_client.post(url, {"remove": str(zed.pk)})
    assert not science.user_set.exists()
    admin_client.post(url, {"remove": "not-a-number"})  # ignored, not a 500
    assert [e.after for e in entries("group.members")] == [{"added": "zed"}, {"removed": "zed"}]


def test_changing_a_groups_limits_changes_its_members_and_is_audited(admin_client: Client) -> None:
    science = Group.objects.create(name="science")
    zed = make_user("zed")
    science.user_set.add(zed)
    url = reverse("console:group", args=[science.pk])
    admin_client.post(url, {"name": "science", "tokens_per_day": "700", "concurrent": "0"})
    assert resolve(zed).tokens_per_day == Limit(700, "group science")
    assert resolve(zed).concurrent == Limit(0, "group science")
    admin_client.post(url, {"name": "lab", "tokens_per_day": "800", "concurrent": "0"})
    science.refresh_from_db()
    assert science.name == "lab" and resolve(zed).tokens_per_day == Limit(800, "group lab")
    changes = entries("limits.changed")
    assert [c.after["tokens_per_day"] for c in changes] == [700, 800]
    assert changes[1].before["tokens_per_day"] == 700
    [renamed] = entries("group.changed")
    assert (renamed.before, renamed.after) == ({"name": "science"}, {"name": "lab"})
    # Saving the same values again records nothing.
    admin_client.post(url, {"name": "lab", "tokens_per_day": "800", "concurrent": "0"})
    assert len(entries("limits.changed")) == 2
    # Emptying every field removes the limits: the role's defaults apply again.
    admin_client.post(url, {"name": "lab"})
    assert not GroupLimits.objects.exists()
    assert resolve(zed).tokens_per_day.source == "role default"


def test_deleting_a_group_asks_first_and_keeps_its_members(admin_client: Client) -> None:
    science = Group.objects.create(name="science")
    GroupLimits.objects.create(group=science, tokens_per_day=5)
    zed = make_user("zed")
    science.user_set.add(zed)
    url = reverse("console:delete_group", args=[science.pk])
    page = admin_client.get(url).content.decode()
    assert "Delete group science?" in page and "1 member stays" in page
    assert Group.objects.filter(pk=science.pk).exists()
    assert admin_client.post(url).status_code == 302
    assert not Group.objects.exists() and not GroupLimits.objects.exists()
    assert User.objects.filter(pk=zed.pk).exists()
    assert resolve(zed).tokens_per_day.source == "role default"
    [deleted] = entries("group.deleted")
    assert deleted.before == {
        "name": "science",
        "members": ["zed"],
        "limits": {
            "tokens_per_day": 5,
            "tokens_per_month": None,
            "requests_per_minute": None,
            "concurrent": None,
            "models": None,
        },
    }


def test_an_unknown_group_is_a_404(admin_client: Client) -> None:
    for name in ("console:group", "console:delete_group"):
        assert admin_client.get(reverse(name, args=[999])).status_code == 404
