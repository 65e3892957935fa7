"""The model catalog: what every enabled connection serves, discovered and cached in Redis.

Discovery asks each enabled connection in parallel (`/api/tags` for Ollama,
`/models` under the OpenAI base URL). A connection that fails is logged and reported in
`Catalog.errors`; the others' models are still listed. Ollama's list says nothing of what
a model can do: each of its models is also asked `/api/show` (a few at a time, within
DISCOVERY_TIMEOUT) for its capabilities and context length; a model whose answer fails or
is late keeps what `/api/tags` said. The result is cached for
`LLM_CATALOG_TTL` seconds (default 30) and dropped whenever a Connection is saved or
deleted. Secrets never go to Redis: entries carry the connection id, not its key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from chatsite.loops import PerLoop
from chatsite.redis import get_async_redis, get_redis
from llm.clients.base import describe, error_message, truncate
from llm.errors import ModelNotFound
from llm.http import get_client
from llm.models import Connection

log = logging.getLogger(__name__)

CACHE_KEY = "llm:catalog:v1"
DISCOVERY_TIMEOUT = 10.0
SHOW_CONCURRENCY = 8  # /api/show requests in flight per Ollama connection


@dataclass
class CatalogModel:
    """One model as people see it, and where it lives."""

    name: str  # public name (connection prefix + upstream name)
    upstream_name: str
    connection_id: int
    connection_name: str
    kind: str  # "ollama" or "openai": the upstream's protocol
    size: int = 0
    digest: str = ""
    modified_at: str = ""  # RFC 3339, "" when unknown
    details: dict = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    owned_by: str = ""
    created: int = 0  # unix seconds, 0 when unknown
    context_length: int = 0  # tokens, 0 when unknown


@dataclass
class Catalog:
    """Every model, and the connections that could not be asked (name -> message)."""

    models: list[CatalogModel]
    errors: dict[str, str]
    fetched_at: float

    def __post_init__(self) -> None:
        self._by_name = {model.name: model for model in reversed(self.models)}

    def find(self, name: str) -> CatalogModel | None:
        """The model called `name`, if listed."""
        return self._by_name.get(name)


async def load_catalog(refresh: bool = False) -> Catalog:
    """The catalog, from the cache unless it is stale or `refresh` is asked."""
    if not refresh:
        cached = _prefetched.get() or await _read_cache()
        if cached is not None:
            return cached
    # One discovery per loop at a time: a burst of requests on a cold cache shares it.
    loop = asyncio.get_running_loop()
    task = _discoveries.get(loop)
    if task is None:
        task = _discoveries[loop] = loop.create_task(_discover_and_cache())
        task.add_done_callback(lambda _: _discoveries.pop(loop, None))
    return await asyncio.shield(task)


# The cached catalog as a caller read it in a round trip of its own (the API door fetches
# it with the key, in one pipeline): load_catalog() in the same request starts from it.
_prefetched: ContextVar[Catalog | None] = ContextVar("catalog_prefetched", default=None)


def use_prefetched(raw: str | None) -> None:
    """Let this request's `load_catalog()` use `raw`, the value of CACHE_KEY just read."""
    _prefetched.set(_parse(raw))


_discoveries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Catalog]] = (
    weakref.WeakKeyDictionary()
)


async def _discover_and_cache() -> Catalog:
    catalog = await discover()
    await _write_cache(catalog)
    return catalog


async def list_models(refresh: bool = False) -> list[CatalogModel]:
    """Every model of every enabled connection, in connection then upstream order."""
    return (await load_catalog(refresh)).models


async def resolve(name: str) -> CatalogModel:
    """The catalog entry of a public model name; raises ModelNotFound."""
    return (await _find(name))[0]


async def resolve_connection(name: str) -> tuple[CatalogModel, Connection]:
    """The catalog entry of a model and its enabled Connection; raises ModelNotFound."""
    entry, catalog = await _find(name)
    cached = _connections.get(entry.connection_id)
    if cached is not None and cached[0] == catalog.fetched_at:
        return entry, cached[1]
    connection = await _read_connection(entry.connection_id, catalog.fetched_at)
    if connection is None:
        raise ModelNotFound(name)
    return entry, connection


_connections: dict[int, tuple[float, Connection]] = {}
# Reads of Connection rows in flight, by (id, catalog stamp): the requests of a burst that
# all miss `_connections` (a new catalog every LLM_CATALOG_TTL) share one query.
_connection_reads: PerLoop[dict[tuple[int, float], asyncio.Task[Connection | None]]] = PerLoop(dict)


async def _read_connection(pk: int, stamp: float) -> Connection | None:
    """The enabled Connection `pk` (None if it is gone or disabled), read once per catalog."""
    reads = _connection_reads.get()
    task = reads.get((pk, stamp))
    if task is None:
        task = reads[(pk, stamp)] = asyncio.get_running_loop().create_task(
            _fetch_connection(pk, stamp)
        )
        task.add_done_callback(lambda _: reads.pop((pk, stamp), None))
    return await asyncio.shield(task)


async def _fetch_connection(pk: int, stamp: float) -> Connection | None:
    try:
        connection = await Connection.objects.aget(pk=pk, enabled=True)
    except Connection.DoesNotExist:
        return None
    # Rows are reused while the catalog they were read under is current: saving a
    # Connection drops the catalog, so the next one carries a new stamp.
    _connections[pk] = (stamp, connection)
    return connection


async def _find(name: str) -> tuple[CatalogModel, Catalog]:
    catalog = await load_catalog()
    found = catalog.find(name)
    # A miss refreshes the catalog (the model may just have been pulled), but not on every
    # request for a name that does not exist.
    miss_refresh = settings.LLM_CATALOG_MISS_REFRESH
    if found is None and time.time() - catalog.fetched_at > miss_refresh:
        catalog = await load_catalog(refresh=True)
        found = catalog.find(name)
    if found is None:
        raise ModelNotFound(name)
    return found, catalog


async def model_names() -> list[str]:
    """The catalog's model names for a picker; none when the catalog cannot be read (logged),
    so that a page with a picker still opens."""
    try:
        return [model.name for model in await list_models()]
    except Exception:
        log.exception("the model catalog is unavailable")
        return []


def model_names_sync() -> list[str]:
    """`model_names` for sync views."""
    return async_to_sync(model_names)()


def invalidate() -> None:
    """Drop the cached catalog (called when a Connection changes)."""
    try:
        get_redis().delete(CACHE_KEY)
    except redis.RedisError as exc:
        log.warning("could not drop the cached model catalog: %s", exc)


async def discover() -> Catalog:
    """Ask every enabled connection for its models, in parallel."""
    connections = [c async for c in Connection.objects.filter(enabled=True).order_by("pk")]
    results = await asyncio.gather(
        *(discover_connection(c) for c in connections), return_exceptions=True
    )
    models: list[CatalogModel] = []
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for connection, result in zip(connections, results, strict=True):
        if isinstance(result, BaseException):
            errors[connection.name] = str(result)
            log.warning("model discovery failed for %s: %s", connection.name, result)
            continue
        for model in result:
            if model.name in seen:  # the older connection keeps a shared name
                continue
            seen.add(model.name)
            models.append(model)
    return Catalog(models, errors, fetched_at=time.time())


async def discover_connection(connection: Connection) -> list[CatalogModel]:
    """The models one connection serves (allowlist applied); raises DiscoveryError."""
    if connection.kind == Connection.Kind.OLLAMA:
        data = await _request_json(connection, "/api/tags")
        entries = _allowed(connection, [_from_tag(connection, i) for i in _items(data, "models")])
        await _enrich(connection, entries)
        return entries
    data = await _request_json(connection, "/models")
    return _allowed(connection, [_from_openai(connection, item) for item in _items(data, "data")])


def _allowed(connection: Connection, entries: list[CatalogModel | None]) -> list[CatalogModel]:
    return [entry for entry in entries if entry and connection.allows(entry.upstream_name)]


async def _enrich(connection: Connection, entries: list[CatalogModel]) -> None:
    """Complete Ollama `entries` from `/api/show`, a few at a time, within DISCOVERY_TIMEOUT;
    those not answered by then stay as `/api/tags` listed them."""
    gate = asyncio.Semaphore(SHOW_CONCURRENCY)
    try:
        async with asyncio.timeout(DISCOVERY_TIMEOUT):
            await asyncio.gather(*(_show(connection, entry, gate) for entry in entries))
    except TimeoutError:
        log.info("%s: /api/show did not answer for every model in time", connection.name)


async def _show(connection: Connection, entry: CatalogModel, gate: asyncio.Semaphore) -> None:
    """Complete `entry` from the connection's `/api/show`; on failure it is left as it is."""
    async with gate:
        try:
            data = await _request_json(connection, "/api/show", {"model": entry.upstream_name})
        except DiscoveryError as exc:
            log.info("no /api/show for %s: %s", entry.name, exc)
            return
    if isinstance(data, dict):
        _complete(entry, data)


def _complete(entry: CatalogModel, shown: dict) -> None:
    """Take the capabilities (when given) and the context length of a `/api/show` answer."""
    capabilities = shown.get("capabilities")
    if isinstance(capabilities, list) and capabilities:
        entry.capabilities = [c for c in capabilities if isinstance(c, str)]
    entry.context_length = _context_length(shown.get("model_info"))


def _context_length(model_info: Any) -> int:
    """The "<architecture>.context_length" of a `/api/show` model_info (0 if absent)."""
    items = model_info.items() if isinstance(model_info, dict) else []
    for key, value in items:
        is_count = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(key, str) and key.endswith(".context_length") and is_count and value > 0:
            return value
    return 0


class DiscoveryError(Exception):
    """A connection could not be asked; the message names the URL and the reason."""


async def probe(connection: Connection) -> str:
    """A one-line health report of a connection ("reachable, N models, version X")."""
    models = await discover_connection(connection)
    version = ""
    if connection.kind == Connection.Kind.OLLAMA:
        try:
            version = str((await _request_json(connection, "/api/version")).get("version", ""))
        except DiscoveryError:
            version = ""
    count = f"{len(models)} model{'' if len(models) == 1 else 's'}"
    return f"reachable, {count}" + (f", version {version}" if version else "")


async def _request_json(connection: Connection, path: str, body: dict | None = None) -> Any:
    """The JSON answer to GET `path` (POST of `body` when given); raises DiscoveryError."""
    url = connection.root_url + path
    try:
        headers = connection.auth_headers()
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None
    try:
        async with asyncio.timeout(DISCOVERY_TIMEOUT):
            method = "GET" if body is None else "POST"
            response = await get_client().request(method, url, headers=headers, json=body)
    except TimeoutError:
        raise DiscoveryError(
            f"cannot reach {url}: no answer within {DISCOVERY_TIMEOUT:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot reach {url}: {describe(exc)}") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        message = error_message(data, fallback=response.text) or response.reason_phrase
        raise DiscoveryError(f"{url} answered {response.status_code}: {message}")
    if data is None:
        raise DiscoveryError(f"{url} did not answer with JSON: {truncate(response.text, 100)}")
    return data


def _items(data: Any, key: str) -> list[dict]:
    items = data.get(key) if isinstance(data, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _from_tag(connection: Connection, item: dict) -> CatalogModel | None:
    upstream = item.get("name") or item.get("model")
    if not upstream:
        return None
    return CatalogModel(
        name=connection.public_name(upstream),
        upstream_name=upstream,
        connection_id=connection.pk,
        connection_name=connection.name,
        kind=connection.kind,
        size=int(item.get("size") or 0),
        digest=str(item.get("digest") or ""),
        modified_at=str(item.get("modified_at") or ""),
        details=item.get("details") if isinstance(item.get("details"), dict) else {},
        capabilities=list(item.get("capabilities") or []),
        owned_by=connection.name,
    )


def _from_openai(connection: Connection, item: dict) -> CatalogModel | None:
    upstream = item.get("id")
    if not upstream:
        return None
    created = item.get("created")
    return CatalogModel(
        name=connection.public_name(upstream),
        upstream_name=upstream,
        connection_id=connection.pk,
        connection_name=connection.name,
        kind=connection.kind,
        owned_by=str(item.get("owned_by") or connection.name),
        created=created if isinstance(created, int) else 0,
        capabilities=["completion"],
    )


async def _read_cache() -> Catalog | None:
    try:
        raw = await get_async_redis().get(CACHE_KEY)
    except redis.RedisError as exc:
        log.warning("model catalog cache unavailable: %s", exc)
        return None
    return _parse(raw)


def _parse(raw: str | None) -> Catalog | None:
    if not raw:
        return None
    global _parsed
    if _parsed is not None and _parsed[0] == raw:
        return _parsed[1]  # the same catalog as last time: skip decoding it again
    data = json.loads(raw)
    catalog = Catalog(
        models=[CatalogModel(**m) for m in data["models"]],
        errors=data["errors"],
        fetched_at=data["fetched_at"],
    )
    _parsed = (raw, catalog)
    return catalog


_parsed: tuple[str, Catalog] | None = None


async def _write_cache(catalog: Catalog) -> None:
    ttl = settings.LLM_CATALOG_TTL
    payload = json.dumps(
        {
            "models": [asdict(m) for m in catalog.models],
            "errors": catalog.errors,
            "fetched_at": catalog.fetched_at,
        }
    )
    try:
        await get_async_redis().set(CACHE_KEY, payload, ex=max(ttl, 1))
    except redis.RedisError as exc:
        log.warning("could not cache the model catalog: %s", exc)
