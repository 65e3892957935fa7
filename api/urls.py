"""The platform API, at the site root: Ollama's paths under /api/, OpenAI's under /v1/."""

from __future__ import annotations

from django.urls import path

from api import native_views, openai_views
from api.formats import OLLAMA, OPENAI

app_name = "api"
urlpatterns = [
    path(OLLAMA.route("chat"), native_views.chat, name="chat"),
    path(OLLAMA.route("generate"), native_views.generate, name="generate"),
    path(OLLAMA.route("tags"), native_views.tags, name="tags"),
    path(OLLAMA.route("show"), native_views.show, name="show"),
    path(OLLAMA.route("version"), native_views.version, name="version"),
    path(OLLAMA.route("ps"), native_views.ps, name="ps"),
    path(OLLAMA.route("embed"), native_views.embed, name="embed"),
    path(OPENAI.route("chat/completions"), openai_views.chat_completions, name="chat_completions"),
    path(OPENAI.route("embeddings"), openai_views.embeddings, name="embeddings"),
    path(OPENAI.route("models"), openai_views.models, name="models"),
    path(OPENAI.route("models/<path:model_id>"), openai_views.model, name="model"),
]
