"""The Connections page: admins add, edit, enable, delete and test model servers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from llm.models import Connection
from tests.llm.conftest import API_KEY

KEY = "sk-new-key-abcdefgh1234"


@pytest.fixture
def saved(transactional_db: None) -> Connection:
    connection = Connection(name="lab", kind="openai", base_url="https://lab.example.com/v1")
    connection.api_key = API_KEY
    connection.save()
    return connection


def form_data(**fields: object) -> dict:
    data = {
        "name": "lab",
        "kind": "openai",
        "base_url": "https://lab.example.com/v1",
        "prefix": "",
        "enabled": "on",
        "api_key": "",
        "allowed_models_text": "",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    "name",
    ["console:connections", "console:add_connection"],
)
def test_it_sends_anonymous_visitors_to_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert "/accounts/" in response["Location"]


def test_it_refuses_members(member_client, saved):
    for url in [
        reverse("console:connections"),
        reverse("console:edit_connection", args=[saved.pk]),
        reverse("console:delete_connection", args=[saved.pk]),
    ]:
        assert member_client.get(url).status_code == 403
    assert (
        member_client.post(reverse("console:delete_connection", args=[saved.pk])).status_code == 403
    )
    assert Connection.objects.filter(pk=saved.pk).exists()


def test_it_lists_connections_with_only_the_key_hint(admin_client, saved):
    response = admin_client.get(reverse("console:connections"))
    assert response.status_code == 200
    assert b"lab.example.com" in response.content
    assert API_KEY.encode() not in response.content
    assert "…6789" in response.content.decode()


def test_it_says_what_to_do_when_there_are_no_connections(admin_client):
    assert b"No connections yet" in admin_client.get(reverse("console:connections")).content


def test_it_adds_a_connection(admin_client):
    response = admin_client.post(
        reverse("console:add_connection"),
        form_data(api_key=KEY, allowed_models_text="gpt-4o*\ngpt-4.1", prefix="lab/"),
    )
    assert response.status_code == 302
    connection = Connection.objects.get(name="lab")
    assert connection.api_key == KEY
    assert connection.allowed_models == ["gpt-4o*", "gpt-4.1"]
    assert connection.prefix == "lab/"


def test_it_refuses_a_url_that_is_not_http(admin_client):
    response = admin_client.post(
        reverse("console:add_connection"), form_data(base_url="file:///etc/passwd")
    )
    assert response.status_code == 200
    assert not Connection.objects.exists()


def test_it_keeps_the_key_when_the_field_is_left_blank(admin_client, saved):
    admin_client.post(reverse("console:edit_connection", args=[saved.pk]), form_data(prefix="x/"))
    saved.refresh_from_db()
    assert (saved.prefix, saved.api_key) == ("x/", API_KEY)


def test_it_never_puts_the_key_in_the_edit_form(admin_client, saved):
    assert (
        API_KEY.encode()
        not in admin_client.get(reverse("console:edit_connection", args=[saved.pk])).content
    )


def test_it_replaces_or_removes_the_key(admin_client, saved):
    admin_client.post(reverse("console:edit_connection", args=[saved.pk]), form_data(api_key=KEY))
    saved.refresh_from_db()
    assert saved.api_key == KEY
    admin_client.post(
        reverse("console:edit_connection", args=[saved.pk]), form_data(clear_api_key="on")
    )
    saved.refresh_from_db()
    assert saved.api_key == ""


def test_it_disables_and_enables_a_connection(admin_client, saved):
    admin_client.post(reverse("console:toggle_connection", args=[saved.pk]))
    saved.refresh_from_db()
    assert not saved.enabled
    admin_client.post(reverse("console:toggle_connection", args=[saved.pk]))
    saved.refresh_from_db()
    assert saved.enabled


def test_it_asks_before_deleting(admin_client, saved):
    page = admin_client.get(reverse("console:delete_connection", args=[saved.pk]))
    assert b"Delete lab?" in page.content
    assert Connection.objects.filter(pk=saved.pk).exists()
    admin_client.post(reverse("console:delete_connection", args=[saved.pk]))
    assert not Connection.objects.filter(pk=saved.pk).exists()


def test_it_tests_a_reachable_connection(admin_client, local):
    response = admin_client.post(reverse("console:test_connection", args=[local.pk]), follow=True)
    assert b"reachable, 2 models, version 0.12.3" in response.content


def test_it_answers_htmx_with_the_probe_fragment(admin_client, cloud):
    response = admin_client.post(
        reverse("console:test_connection", args=[cloud.pk]), HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert html.startswith(f'<output id="probe-{cloud.pk}"')
    assert "reachable, 2 models" in html


def test_it_shows_the_exact_error_escaped(admin_client, local, mock):
    mock.ollama_models[:] = []
    local.base_url = f"{mock.url}/<script>"
    local.save()
    response = admin_client.post(
        reverse("console:test_connection", args=[local.pk]), HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert "404" in html and "&lt;script&gt;" in html
    assert "<script>" not in html


def test_it_refuses_credentials_in_the_url(admin_client):
    response = admin_client.post(
        reverse("console:add_connection"),
        form_data(base_url="http://svc:s3cretpw@gpu.example:11434"),
    )
    assert response.status_code == 200
    assert b"Leave the user name and password out of the URL" in response.content
    assert not Connection.objects.filter(base_url__contains="s3cretpw").exists()


# -- the key follows the server ---------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "https://elsewhere.example.com/v1",  # another host
        "http://lab.example.com/v1",  # another scheme
        "https://lab.example.com:8443/v1",  # another port
    ],
)
def test_moving_to_another_server_removes_the_stored_key(admin_client, saved, base_url):
    response = admin_client.post(
        reverse("console:edit_connection", args=[saved.pk]),
        form_data(base_url=base_url),
        follow=True,
    )
    saved.refresh_from_db()
    assert (saved.base_url, saved.api_key, saved.api_key_hint) == (base_url, "", "none")
    assert b"The stored API key of lab was removed" in response.content


@pytest.mark.parametrize(
    "base_url",
    ["https://lab.example.com/v2", "https://LAB.example.com:443/v1", "https://lab.example.com"],
)
def test_a_new_path_on_the_same_server_keeps_the_key(admin_client, saved, base_url):
    response = admin_client.post(
        reverse("console:edit_connection", args=[saved.pk]),
        form_data(base_url=base_url),
        follow=True,
    )
    saved.refresh_from_db()
    assert saved.api_key == API_KEY
    assert b"was removed" not in response.content


def test_a_key_entered_with_the_new_server_is_stored(admin_client, saved):
    response = admin_client.post(
        reverse("console:edit_connection", args=[saved.pk]),
        form_data(base_url="https://elsewhere.example.com/v1", api_key=KEY),
        follow=True,
    )
    saved.refresh_from_db()
    assert (saved.base_url, saved.api_key) == ("https://elsewhere.example.com/v1", KEY)
    assert b"was removed" not in response.content


def test_the_edit_form_says_that_a_new_server_drops_the_key(admin_client, saved):
    html = admin_client.get(reverse("console:edit_connection", args=[saved.pk])).content.decode()
    assert "Changing the server (scheme, host or port) of the base URL removes the stored" in html


# -- the Test button shows admins the detail members are spared -------------------------


def test_the_test_shows_the_address_and_the_transport_error(admin_client, local, mock):
    port = mock.port
    mock.stop()
    response = admin_client.post(
        reverse("console:test_connection", args=[local.pk]), HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert f"http://127.0.0.1:{port}/api/tags" in html
    assert "ConnectError: [Errno 111]" in html


def test_the_test_shows_why_an_address_is_refused(admin_client, transactional_db):
    refused = Connection.objects.create(name="meta", base_url="http://0xA9FEA9FE:11434")
    response = admin_client.post(
        reverse("console:test_connection", args=[refused.pk]), HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert "0xa9fea9fe resolves to 169.254.169.254, a link-local address" in html
