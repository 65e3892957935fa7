"""The platform API, at the site root: Ollama's paths under /api/, OpenAI's under /v1/."""

from __future__ import annotations

from django.urls import path

from api import native_views, openai_views

app_name = "api"
urlpatterns = [
    path("api/chat", native_views.chat, name="chat"),
    path("api/generate", native_views.generate, name="generate"),
    path("api/tags", native_views.tags, name="tags"),
    path("api/show", native_views.show, name="show"),
    path("api/version", native_views.version, name="version"),
    path("api/ps", native_views.ps, name="ps"),
    path("api/embed", native_views.embed, name="embed"),
    path("v1/chat/completions", openai_views.chat_completions, name="chat_completions"),
    path("v1/embeddings", openai_views.embeddings, name="embeddings"),
    path("v1/models", openai_views.models, name="models"),
    path("v1/models/<path:model_id>", openai_views.model, name="model"),
]
