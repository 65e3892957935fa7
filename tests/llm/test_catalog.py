"""The model catalog: discovery from both protocols, failures, the Redis cache."""

from __future__ import annotations

import asyncio
import json

import pytest

from llm import catalog
from llm.errors import ModelNotFound
from llm.models import Connection

pytestmark = pytest.mark.django_db(transaction=True)


def tag_requests(mock) -> int:
    return sum(r.path == "/api/tags" for r in mock.requests)


async def test_it_lists_the_models_of_every_connection(both, mock):
    models = await catalog.list_models()
    assert [(m.name, m.connection_name, m.kind) for m in models] == [
        ("llama3.2:latest", "local", "ollama"),
        ("qwen3:8b", "local", "ollama"),
        ("gpt-4o-mini", "cloud", "openai"),
        ("gpt-4.1", "cloud", "openai"),
    ]
    llama, gpt = models[0], models[2]
    assert llama.size > 0 and len(llama.digest) == 64 and llama.modified_at
    assert llama.details["family"] == "llama" and "completion" in llama.capabilities
    assert gpt.owned_by == "library" and gpt.created > 0


async def test_it_still_lists_the_others_when_a_connection_is_down(both):
    await Connection.objects.acreate(name="gone", kind="ollama", base_url="http://127.0.0.1:9")
    found = await catalog.load_catalog()
    assert len(found.models) == 4
    assert list(found.errors) == ["gone"]
    assert "http://127.0.0.1:9/api/tags" in found.errors["gone"]


async def test_it_reports_an_upstream_that_refuses_the_key(cloud, mock):
    mock.api_key = "sk-another-key"
    found = await catalog.load_catalog()
    assert found.models == []
    assert "401" in found.errors["cloud"]


async def test_it_applies_the_allowlist_and_the_prefix(local):
    local.allowed_models = ["qwen*"]
    local.prefix = "lab/"
    await local.asave()
    models = await catalog.list_models()
    assert [(m.name, m.upstream_name) for m in models] == [("lab/qwen3:8b", "qwen3:8b")]


async def test_it_skips_disabled_connections(local, cloud):
    cloud.enabled = False
    await cloud.asave()
    assert {m.connection_name for m in await catalog.list_models()} == {"local"}


async def test_it_serves_the_list_from_the_cache_until_asked_to_refresh(local, mock):
    await catalog.list_models()
    await catalog.list_models()
    assert tag_requests(mock) == 1
    mock.ollama_models.append("phi4:latest")
    assert "phi4:latest" not in {m.name for m in await catalog.list_models()}
    assert "phi4:latest" in {m.name for m in await catalog.list_models(refresh=True)}
    assert tag_requests(mock) == 2


async def test_it_drops_the_cache_when_a_connection_changes(local, mock):
    await catalog.list_models()
    local.prefix = "box/"
    await local.asave()
    assert {m.name for m in await catalog.list_models()} == {"box/llama3.2:latest", "box/qwen3:8b"}
    await local.adelete()
    assert await catalog.list_models() == []


async def test_it_resolves_a_name_to_its_connection(both):
    entry = await catalog.resolve("gpt-4.1")
    assert (entry.connection_name, entry.upstream_name, entry.kind) == (
        "cloud",
        "gpt-4.1",
        "openai",
    )
    with pytest.raises(ModelNotFound):
        await catalog.resolve("nope")


async def test_it_refreshes_on_a_miss_to_find_a_newly_pulled_model(local, mock, settings):
    settings.LLM_CATALOG_MISS_REFRESH = 0
    await catalog.list_models()
    mock.ollama_models.append("phi4:latest")
    assert (await catalog.resolve("phi4:latest")).connection_name == "local"


async def test_it_shares_one_discovery_between_concurrent_callers(local, mock):
    import asyncio

    await asyncio.gather(*(catalog.list_models() for _ in range(20)))
    assert tag_requests(mock) == 1


async def test_it_probes_a_connection(local, cloud):
    assert await catalog.probe(local) == "reachable, 2 models, version 0.12.3"
    assert await catalog.probe(cloud) == "reachable, 2 models"


def test_it_offers_the_model_names_to_sync_views(local):
    assert catalog.model_names_sync() == ["llama3.2:latest", "qwen3:8b"]


async def test_a_request_starts_from_the_catalog_its_caller_already_read(local):
    from chatsite.redis import get_async_redis

    await catalog.load_catalog()  # discovered and cached
    raw = await get_async_redis().get(catalog.CACHE_KEY)
    await get_async_redis().delete(catalog.CACHE_KEY)

    async def one_request(prefetched: str | None) -> list[str]:
        catalog.use_prefetched(prefetched)
        return [m.name for m in (await catalog.load_catalog()).models]

    # Each request runs in a context of its own, as the API door's do.
    assert await asyncio.create_task(one_request(raw)) == ["llama3.2:latest", "qwen3:8b"]
    assert await get_async_redis().get(catalog.CACHE_KEY) is None  # no discovery was needed
    await asyncio.create_task(one_request(None))  # nothing prefetched: read, then discover
    assert await get_async_redis().get(catalog.CACHE_KEY) is not None


def show_requests(mock) -> list[str]:
    return [r.body["model"] for r in mock.requests if r.path == "/api/show"]


async def test_ollama_models_are_completed_from_their_api_show(both, mock):
    models = {m.name: m for m in await catalog.list_models()}
    # /api/tags says nothing of what a model can do: /api/show says it, once per model.
    assert sorted(show_requests(mock)) == ["llama3.2:latest", "qwen3:8b"]
    assert models["llama3.2:latest"].capabilities == ["completion", "tools"]
    assert models["qwen3:8b"].capabilities == ["completion", "tools", "thinking"]
    assert models["qwen3:8b"].context_length == 131072
    assert models["qwen3:8b"].details["parameter_size"] == "3.2B"  # /api/tags' details stay
    # An OpenAI-compatible server is not asked: it can only be said to complete.
    assert (models["gpt-4.1"].capabilities, models["gpt-4.1"].context_length) == (["completion"], 0)


async def test_a_model_whose_api_show_fails_is_still_listed(local, mock):
    mock.show_broken.add("qwen3:8b")
    found = await catalog.load_catalog()
    assert found.errors == {}
    qwen, llama = found.find("qwen3:8b"), found.find("llama3.2:latest")
    assert qwen is not None and (qwen.capabilities, qwen.context_length) == ([], 0)
    assert llama is not None and llama.context_length == 131072


async def test_only_the_allowed_models_are_shown(local, mock):
    local.allowed_models = ["qwen*"]
    await local.asave()
    await catalog.list_models()
    assert show_requests(mock) == ["qwen3:8b"]


async def test_a_catalog_cached_before_context_lengths_still_reads(local):
    from chatsite.redis import get_async_redis

    await catalog.load_catalog()
    cached = json.loads(await get_async_redis().get(catalog.CACHE_KEY))
    for model in cached["models"]:
        del model["context_length"]

    async def one_request() -> list[catalog.CatalogModel]:  # in a context of its own
        catalog.use_prefetched(json.dumps(cached))
        return await catalog.list_models()

    models = await asyncio.create_task(one_request())
    assert [(m.name, m.context_length) for m in models] == [
        ("llama3.2:latest", 0),
        ("qwen3:8b", 0),
    ]
