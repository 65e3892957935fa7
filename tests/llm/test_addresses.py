"""Where connections may reach: never link-local or metadata addresses, private ones by
default (LLM_ALLOW_PRIVATE_NETWORKS), checked when the form is saved and again on every
connect (the engine resolves the name itself and connects to the address it checked)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

import llm
from llm import catalog
from llm.errors import UpstreamUnavailable
from llm.http import close_client
from llm.models import Connection
from llm.services import sync_default_connections
from tests.console.test_connections import form_data
from tests.llm.conftest import collect

HI = [{"role": "user", "content": "hi"}]

ALWAYS_REFUSED = [
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
    ("http://[fe80::1]:11434", "fe80::1 is a link-local address"),
    # other spellings of 169.254.169.254
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address"),
    ("http://[::ffff:a9fe:a9fe]/", "is a link-local address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "is a link-local address"),  # NAT64
    ("http://[2002:a9fe:a9fe::1]/", "is a link-local address"),  # 6to4
    ("http://2852039166/", "2852039166 resolves to 169.254.169.254, a link-local address"),
    ("http://0xA9FEA9FE/", "0xa9fea9fe resolves to 169.254.169.254, a link-local address"),
    ("http://169.254.43518/", "169.254.43518 resolves to 169.254.169.254, a link-local"),
    ("http://0251.0376.0251.0376/", "0251.0376.0251.0376 resolves to 169.254.169.254, a link"),
]


def add(admin_client, base_url: str, name: str = "lab") -> str:
    """Post the add form; the page's text (a redirect's is empty)."""
    data = form_data(name=name, base_url=base_url)
    response = admin_client.post(reverse("console:add_connection"), data)
    return response.content.decode() if response.status_code == 200 else ""


# -- saving ----------------------------------------------------------------------------


@pytest.mark.parametrize(("base_url", "reason"), ALWAYS_REFUSED)
@pytest.mark.parametrize("private", [True, False], ids=["private-allowed", "private-refused"])
def test_the_form_always_refuses_link_local_and_metadata_addresses(
    admin_client, settings, base_url, reason, private
):
    settings.LLM_ALLOW_PRIVATE_NETWORKS = private
    html = add(admin_client, base_url)
    assert "This server is not allowed:" in html and reason in html
    assert "connections may not reach it" in html
    assert not Connection.objects.exists()


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://169.254.169.254/", "169.254.169.254 is a link-local address"),
        ("http://2852039166/", "2852039166 resolves to 169.254.169.254, a link-local address"),
        ("http://0251.0376.0251.0376/", "Enter an http:// or https:// URL"),  # httpx refuses it
        ("http://[fd00:ec2::254]:80/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://gpu box:11434", "Enter an http:// or https:// URL"),
        ("http://-gpu:11434", "Enter an http:// or https:// URL"),
        ("http://gpu:99999", "Enter an http:// or https:// URL"),
        ("gopher://gpu:70", "Enter an http:// or https:// URL"),
    ],
)
def test_the_model_refuses_what_the_environment_could_bring(db, base_url, message):
    """`OLLAMA_BASE_URL` and the like go through the model's validation, not the form's."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        Connection(name="c", base_url=base_url).full_clean()


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:11434",  # resolves to loopback
        "http://127.0.0.1:11434",
        "http://[::1]:11434",
        "http://10.0.0.5:11434",
        "http://192.168.1.20:11434",
        "http://gpu-box:11434",  # a single-label name, as on a LAN or in Docker
        "http://ollama_1:11434",
        "https://api.example.com/v1",
    ],
)
def test_the_form_allows_loopback_private_and_named_servers_by_default(admin_client, base_url):
    assert add(admin_client, base_url) == ""
    assert Connection.objects.get(name="lab").base_url == base_url


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://localhost:11434", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://127.0.0.1:11434", "127.0.0.1 is a loopback address"),
        ("http://[::1]:11434", "::1 is a loopback address"),
        ("http://10.0.0.5:11434", "10.0.0.5 is a private address"),
        ("http://[fd12::5]:11434", "fd12::5 is a private address"),
        ("http://100.64.0.1/", "100.64.0.1 is a private address"),
        ("http://0.0.0.0:11434", "0.0.0.0 is an unspecified address"),
    ],
)
def test_the_form_refuses_private_servers_when_the_setting_is_off(
    admin_client, settings, base_url, reason
):
    settings.LLM_ALLOW_PRIVATE_NETWORKS = False
    html = add(admin_client, base_url)
    assert reason in html and "LLM_ALLOW_PRIVATE_NETWORKS is off" in html
    assert not Connection.objects.exists()


def test_public_servers_pass_when_private_ones_are_refused(admin_client, settings):
    settings.LLM_ALLOW_PRIVATE_NETWORKS = False
    assert add(admin_client, "http://8.8.8.8:11434") == ""
    # A name that does not resolve now is left to the check at connect time.
    assert add(admin_client, "https://api.example.com/v1", name="cloud") == ""
    assert Connection.objects.count() == 2


def test_the_default_connection_from_the_environment_takes_a_single_label_name(settings, db):
    settings.OLLAMA_BASE_URL = "http://gpu-box:11434"
    settings.OPENAI_BASE_URL = ""
    assert "ollama created" in sync_default_connections()


def test_a_new_default_server_from_the_environment_drops_an_admins_key(settings, db):
    settings.OPENAI_BASE_URL = ""
    settings.OLLAMA_BASE_URL = "http://gpu-box:11434"
    sync_default_connections()
    ollama = Connection.objects.get(name="ollama")
    ollama.api_key = "sk-set-by-an-admin-1234"
    ollama.save()
    sync_default_connections()  # the same server: kept
    assert Connection.objects.get(name="ollama").api_key == "sk-set-by-an-admin-1234"
    settings.OLLAMA_BASE_URL = "http://other-box:11434"
    sync_default_connections()
    assert Connection.objects.get(name="ollama").api_key == ""


# -- connecting ------------------------------------------------------------------------


async def test_a_stream_to_a_loopback_server_fails_clearly_when_private_ones_are_refused(
    local, mock, settings
):
    await catalog.list_models()  # discovered while loopback was allowed
    await collect(llm.stream_chat("llama3.2:latest", HI))  # and it works by default
    await close_client()  # no kept-alive connection: the next request connects anew
    settings.LLM_ALLOW_PRIVATE_NETWORKS = False
    requests = len(mock.requests)
    with pytest.raises(UpstreamUnavailable) as raised:
        await collect(llm.stream_chat("llama3.2:latest", HI))
    assert raised.value.message == (
        "the model server's address is not allowed by this site's network settings"
    )
    assert "127.0.0.1 is a loopback address" in raised.value.detail
    assert len(mock.requests) == requests  # nothing reached it


async def test_discovery_checks_addresses_too(local, mock, settings):
    settings.LLM_ALLOW_PRIVATE_NETWORKS = False
    await close_client()
    found = await catalog.discover()
    assert found.models == [] and "loopback address" in found.errors["local"]
    assert mock.requests == []
