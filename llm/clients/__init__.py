"""Protocol clients: Ollama (NDJSON) and OpenAI-compatible (SSE) upstreams."""
