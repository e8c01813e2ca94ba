"""The context length an OpenAI-compatible server says it serves, for API models without ``max_length``.

- vLLM: ``GET /v1/models`` -> ``data[i].max_model_len``;
- llama.cpp: ``GET /props`` -> ``default_generation_settings.n_ctx`` (or a
  top-level ``n_ctx``; the per-slot context the server was started with, not the
  model's training length ``n_ctx_train``).

Servers that say neither (OpenAI, most proxies) return ``None``; the caller then
asks the user for ``max_length``.

`api_model_context` turns that into the context our prompts are measured against, for the way
lm-eval sends them: its text-completion models (``local-completions``) tokenize every request and keep
its last ``max_length - 1`` tokens (``lm_eval/models/api_models.py``: one token is held back for
generation; ``max_length`` defaults to 2,048), while chat models and ``tokenized_requests=False`` send
text and cut nothing, so the server's own limit is the one that counts.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from longrm_tasks.context.fitting import ModelContext
from longrm_tasks.errors import InputError

TIMEOUT_S = 5.0
LM_EVAL_API_MAX_LENGTH = 2048  # TemplateAPI's max_length default (lm_eval/models/api_models.py)


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


def server_context(base_url: str, model: str | None = None, api_key: str | None = None) -> ModelContext:
    """The context as the server at ``base_url`` reports it (tokens ``None`` and the reason if it does not)."""
    root = _root(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    models = _get_json(root + "/v1/models", headers)
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        entries = [m for m in models["data"] if isinstance(m, dict)]
        chosen = [m for m in entries if model is None or m.get("id") == model] or entries
        for entry in chosen:
            if isinstance(entry.get("max_model_len"), int) and entry["max_model_len"] > 0:
                return ModelContext(entry["max_model_len"], f"server {root}/v1/models max_model_len")
    props = _get_json(root + "/props", headers)
    if isinstance(props, dict):
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        n_ctx = n_ctx if isinstance(n_ctx, int) else props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return ModelContext(n_ctx, f"server {root}/props n_ctx")
    return ModelContext(None, f"the server at {root} reports no context length "
                              "(/v1/models max_model_len, /props n_ctx)")


def is_chat_endpoint(base_url: str) -> bool:
    """lm-eval's chat models post to ``.../chat/completions``; its text-completion models to ``.../completions``."""
    return urlsplit(base_url).path.rstrip("/").endswith("/chat/completions")


def api_model_context(base_url: str, model: str | None, *, max_length: int | None,
                      tokenized_requests: bool | None) -> ModelContext:
    """The context of an lm-eval API model, as lm-eval and the server apply it."""
    lm_eval_cuts = tokenized_requests is not False and not is_chat_endpoint(base_url)
    held_back = "minus the 1 token lm-eval's API models hold back for generation"
    if max_length:
        return (ModelContext(max_length - 1, f"max_length argument {held_back}") if lm_eval_cuts
                else ModelContext(max_length, "max_length argument"))
    served, where = server_context(base_url, model)
    if served is None:
        raise InputError(f"{where}: pass max_length=<the server's context> in --model_args", field="max_length")
    if not lm_eval_cuts:
        return ModelContext(served, where)
    if served > LM_EVAL_API_MAX_LENGTH:
        # lm-eval would keep only the last 2,047 tokens of every request, whatever the server takes.
        raise InputError(f"{where} is {served:,} tokens, but lm-eval's text-completion models tokenize every request "
                         f"and cut it to their own max_length (default {LM_EVAL_API_MAX_LENGTH:,}): pass "
                         f"max_length={served} in --model_args", field="max_length")
    if served < LM_EVAL_API_MAX_LENGTH:
        return ModelContext(served, where)
    return ModelContext(served - 1, f"{where} {held_back}")
