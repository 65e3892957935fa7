from __future__ import annotations

app_name = "llm"
urlpatterns: list = []
