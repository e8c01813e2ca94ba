"""The context length an OpenAI-compatible server says it serves, for API models without ``max_length``.

- vLLM: ``GET /v1/models`` -> ``data[i].max_model_len``;
- llama.cpp: ``GET /props`` -> ``default_generation_settings.n_ctx`` (or a
  top-level ``n_ctx``; the per-slot context the server was started with, not the
  model's training length ``n_ctx_train``).

Servers that say neither (OpenAI, most proxies) return ``None``; the caller then
asks the user for ``max_length``.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 5.0


def _root(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


def _get_json(url: str, headers: dict[str, str]):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (the user's server)
            return json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def server_context(base_url: str, model: str | None = None, api_key: str | None = None) -> tuple[int | None, str]:
    """(context tokens, where it came from) as the server at ``base_url`` reports it; (None, reason) if it does not."""
    root = _root(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    models = _get_json(root + "/v1/models", headers)
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        entries = [m for m in models["data"] if isinstance(m, dict)]
        chosen = [m for m in entries if model is None or m.get("id") == model] or entries
        for entry in chosen:
            if isinstance(entry.get("max_model_len"), int) and entry["max_model_len"] > 0:
                return entry["max_model_len"], f"server {root}/v1/models max_model_len"
    props = _get_json(root + "/props", headers)
    if isinstance(props, dict):
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        n_ctx = n_ctx if isinstance(n_ctx, int) else props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return n_ctx, f"server {root}/props n_ctx"
    return None, f"the server at {root} reports no context length (/v1/models max_model_len, /props n_ctx)"
