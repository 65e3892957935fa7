"""Fixtures shared by the whole suite: people, signed-in clients, a live Daphne."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.models import User
from chatsite.redis import get_redis
from tests import live

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis (the suite's own, or its own db number in CI)."""
    get_redis().flushdb()
    yield


def make_user(username: str, role: str = User.Role.MEMBER, **fields: object) -> User:
    """Create a user with the suite's password."""
    user = User(username=username, role=role, **fields)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def member(db: None) -> User:
    return make_user("mia")


@pytest.fixture
def admin(db: None) -> User:
    return make_user("ada", role=User.Role.ADMIN)


@pytest.fixture
def member_client(member: User) -> Client:
    client = Client()
    client.force_login(member)
    return client


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture(scope="session")
def daphne_url(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[str]:
    """A real Daphne on a free loopback port, sharing the test database and Redis."""
    with django_db_blocker.unblock(), live.daphne() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def _close_database_pool(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Close the suite's connections before the test database is dropped: PostgreSQL
    refuses to drop a database someone is still connected to."""
    yield
    from django.db import connections

    # The async ORM's calls made outside a request (by tests and their fixtures) run on
    # asgiref's one sync thread, whose connection only that thread can close.
    asyncio.run(sync_to_async(connections.close_all)())
    for connection in connections.all():
        if hasattr(connection, "close_pool"):
            connection.close_pool()
