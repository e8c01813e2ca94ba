"""Judge backends behind one small interface: ``name`` and ``generate(conversations) -> [Generation]``.

- ``OpenAIChatJudge``: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI,
  vLLM/SGLang/llama.cpp servers, ...) through the ``openai`` package when installed, else a
  plain ``urllib`` POST, so the package gains no hard dependency;
- ``VLLMJudge``: offline batched generation with ``vllm.LLM.chat``;
- ``TransformersJudge``: ``AutoModelForCausalLM.generate`` on the chat template.

Greedy decoding (temperature 0) by default; with sampling, each backend gets the
seed so reruns agree where the backend honours it.

Long synthesis runs meet unreliable servers, so a request is retried with
exponential backoff on dropped connections, timeouts (``timeout`` seconds per
request, configurable), 408/429 and 5xx answers and replies that are not a chat
completion (not JSON, no ``choices``), by one loop for both clients, and fails in
one line naming the judge and the last error when ``retries`` are exhausted. Every
failed attempt is counted (``failed_attempts``; the vote summary adds them up). Two outcomes are
not failures but facts the caller counts: a judgment cut at the token limit
(``finish_reason == "length"``) and a prompt longer than the judge's context
(an HTTP 400 that says so; ``too_long``), which skips that record.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, Sequence

from longrm_tasks.errors import InputError

Conversation = list[dict]

# How servers say a prompt does not fit: vLLM "maximum context length is 4096 tokens", OpenAI
# "context_length_exceeded", llama.cpp "exceeds the available context size", SGLang "longer than
# the model's context length", TGI "must have less than N tokens".
CONTEXT_ERROR_RE = re.compile(r"context|too long|too large|maximum.{0,40}length|max_model_len|"
                              r"less than \d+ tokens|exceed", re.IGNORECASE)
CONTEXT_ERROR_STATUS = (400, 413, 422)
RETRY_STATUS = (408, 409, 425, 429)  # and every 5xx


@dataclass(frozen=True)
class Generation:
    """One judge's answer to one conversation."""

    text: str
    finish_reason: str | None = None  # "stop", "length" (cut at the token limit), ... ; None: unknown
    too_long: bool = False  # the prompt does not fit the judge's context: nothing was generated

    @property
    def cut(self) -> bool:
        return self.finish_reason == "length"


def as_generation(value) -> Generation:
    """Judges written elsewhere may return plain strings."""
    return value if isinstance(value, Generation) else Generation(str(value))


class Judge(Protocol):
    name: str

    def generate(self, conversations: Sequence[Conversation]) -> list[Generation]:
        """One generation per conversation, in order."""


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.0
    max_new_tokens: int = 1024
    seed: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """Per-request timeout and retries with exponential backoff (``backoff * 2**attempt``, at most 60 s)."""

    timeout: float = 300.0
    retries: int = 3
    backoff: float = 2.0

    def wait(self, attempt: int) -> float:
        return min(self.backoff * 2 ** attempt, 60.0)


class _Retry(Exception):
    """A transient failure: worth another attempt (after ``wait`` seconds when the server said so)."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


def _retry_after(answer) -> float | None:
    """A ``Retry-After: SECONDS`` header (429/503) of an HTTP error or response, capped at a minute;
    None when absent or a date."""
    try:
        return min(max(float(answer.headers.get("Retry-After", "")), 0.0), 60.0)
    except (TypeError, ValueError, AttributeError):
        return None


def is_context_error(status: int, body: str) -> bool:
    return status in CONTEXT_ERROR_STATUS and bool(CONTEXT_ERROR_RE.search(body))


class OpenAIChatJudge:
    """A model behind an OpenAI-compatible chat endpoint; ``base_url`` ends in ``/v1`` as for the
    ``openai`` client. Requests run ``concurrency`` at a time; results keep input order."""

    def __init__(self, name: str, model: str, base_url: str, settings: GenerationSettings, *,
                 api_key: str | None = None, concurrency: int = 4, retry: RetryPolicy | None = None,
                 client: str = "auto"):
        if client not in ("auto", "openai", "urllib"):
            raise ValueError(f"client must be auto, openai or urllib, got {client!r}")
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.api_key = api_key or "EMPTY"  # local servers ignore it; the openai client requires one
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._openai = self._client = None
        if client != "urllib":
            try:
                import openai
            except ImportError:
                if client == "openai":
                    raise InputError("the openai client is not installed: pip install openai", field="judge") from None
            else:
                self._openai = openai
                # The client's own retries are off: every retry goes through `_with_retries`, so both
                # clients retry the same faults (a malformed reply too) and every failed attempt is counted.
                self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key,
                                             timeout=self.retry.timeout, max_retries=0)
        self.failed_attempts = 0  # attempts that failed and were retried or given up on (the run's summary)
        self._count_lock = threading.Lock()

    def _request(self, messages: Conversation) -> dict:
        return {"model": self.model, "messages": messages, "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_new_tokens, "seed": self.settings.seed}

    def _gave_up(self, attempts: int, reason: str) -> InputError:
        return InputError(f"{self.name}: no answer from {self.base_url} after {attempts} attempt(s) "
                          f"(last: {reason}); check the server, or raise --timeout / --retries", field="judge")

    def _post(self, messages: Conversation) -> Generation:
        if self._client is not None:
            return self._with_retries(lambda: self._attempt_openai(messages))
        body = json.dumps(self._request(messages)).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        return self._with_retries(lambda: self._attempt(request))

    def _with_retries(self, attempt_once) -> Generation:
        """``attempt_once()`` until it returns, at most ``retries + 1`` times, backing off between tries."""
        attempts = self.retry.retries + 1
        for attempt in range(attempts):
            try:
                return attempt_once()
            except _Retry as err:
                with self._count_lock:
                    self.failed_attempts += 1
                if attempt == attempts - 1:
                    raise self._gave_up(attempts, str(err)) from None
                wait = self.retry.wait(attempt) if err.wait is None else err.wait
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _attempt_openai(self, messages: Conversation) -> Generation:
        """One round trip through the ``openai`` client: a Generation, or _Retry for a transient failure."""
        openai = self._openai
        try:
            reply = self._client.chat.completions.create(**self._request(messages))
        except openai.APIStatusError as err:
            body = f"{err.message} {getattr(err, 'body', '') or ''}"
            if is_context_error(err.status_code, body):
                return Generation("", too_long=True)
            if err.status_code >= 500 or err.status_code in RETRY_STATUS:
                raise _Retry(f"HTTP {err.status_code}: {err.message[:200]}", _retry_after(err.response)) from None
            raise InputError(f"{self.name}: {self.base_url} answered HTTP {err.status_code}: {err.message}",
                             field="judge") from None
        except openai.APIConnectionError as err:  # includes APITimeoutError
            raise _Retry(f"{type(err).__name__}: {err}") from None
        except (ValueError, openai.APIResponseValidationError) as err:  # a body that is not JSON
            raise _Retry(f"not a chat completion: {type(err).__name__}: {err}"[:300]) from None
        try:  # the client does not validate the shape: a reply without choices gets here
            choice = reply.choices[0]
            return Generation(choice.message.content or "", choice.finish_reason)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise _Retry(f"not a chat completion: {str(reply)[:200]!r}") from None

    def _attempt(self, request: urllib.request.Request) -> Generation:
        """One HTTP round trip: a Generation, or _Retry for a transient failure."""
        try:
            with urllib.request.urlopen(request, timeout=self.retry.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            body = err.read()[:2000].decode("utf-8", "replace")
            if is_context_error(err.code, body):
                return Generation("", too_long=True)
            if err.code >= 500 or err.code in RETRY_STATUS:
                raise _Retry(f"HTTP {err.code}: {body[:200]}", _retry_after(err)) from None
            raise InputError(f"{self.name}: {self.base_url} answered HTTP {err.code}: {body[:300]}",
                             field="judge") from None
        except urllib.error.URLError as err:  # refused, DNS, timeout while connecting
            raise _Retry(f"{type(err.reason).__name__}: {err.reason}") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
            # RemoteDisconnected, ConnectionResetError, IncompleteRead, a silent server (timeout)
            raise _Retry(f"{type(err).__name__}: {err or 'timed out'}") from None
        try:
            reply = json.loads(raw)
            choice = reply["choices"][0]
            return Generation(choice["message"].get("content") or "", choice.get("finish_reason"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _Retry(f"not a chat completion: {raw[:200].decode('utf-8', 'replace')!r}") from None

    def generate(self, conversations: Sequence[Conversation]) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._post, conversations))


class VLLMJudge:
    """Offline vLLM generation: one ``LLM`` per judge, batched ``chat`` calls."""

    def __init__(self, name: str, model: str, settings: GenerationSettings, **llm_kwargs):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise InputError("the vllm backend needs `pip install longrm-tasks[vllm]`", field="judge") from None
        self.name = name
        self.llm = LLM(model=model, seed=settings.seed, **llm_kwargs)
        self.params = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_new_tokens,
                                     seed=settings.seed)
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.max_model_len = getattr(model_config, "max_model_len", None)

    def _fits(self, messages: Conversation) -> bool:
        # vLLM refuses a whole batch when one prompt exceeds max_model_len: find those first.
        if self.max_model_len is None:
            return True
        ids = self.llm.get_tokenizer().apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return len(ids) < self.max_model_len

    def generate(self, conversations: Sequence[Conversation]) -> list[Generation]:
        fits = [self._fits(c) for c in conversations]
        outputs = iter(self.llm.chat([c for c, ok in zip(conversations, fits) if ok], self.params, use_tqdm=False)
                       if any(fits) else [])
        out = []
        for ok in fits:
            if not ok:
                out.append(Generation("", too_long=True))
                continue
            done = next(outputs).outputs[0]
            out.append(Generation(done.text, done.finish_reason))
        return out


class TransformersJudge:
    """``generate`` on the chat-templated prompt, one conversation at a time (long prompts
    differ a lot in length, so padding a batch would waste most of it)."""

    def __init__(self, name: str, model, tokenizer, settings: GenerationSettings):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings

    @classmethod
    def from_pretrained(cls, name: str, path: str, settings: GenerationSettings, **model_kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **{"dtype": "auto", **model_kwargs})
        model.eval()
        return cls(name, model, tokenizer, settings)

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens (None when its config does not say)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, conversations: Sequence[Conversation]) -> list[Generation]:
        import torch
        from transformers import set_seed

        sampling = self.settings.temperature > 0
        extra = {"do_sample": True, "temperature": self.settings.temperature} if sampling else {"do_sample": False}
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        out = []
        for i, messages in enumerate(conversations):
            inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                        return_dict=True).to(self.model.device)
            n_prompt = inputs["input_ids"].shape[1]
            if self.context_length is not None and n_prompt >= self.context_length:
                out.append(Generation("", too_long=True))
                continue
            set_seed(self.settings.seed + i)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens,
                                          pad_token_id=self.tokenizer.pad_token_id, **extra)
            new = ids[0, n_prompt:]
            ended = len(new) > 0 and int(new[-1]) in eos
            finish = "stop" if ended or len(new) < self.settings.max_new_tokens else "length"
            out.append(Generation(self.tokenizer.decode(new, skip_special_tokens=True), finish))
        return out


BACKENDS = ("openai", "vllm", "hf")


def parse_judge_spec(spec: str) -> tuple[str, str, str, str | None]:
    """``[NAME=]BACKEND:MODEL[@BASE_URL]`` -> (name, backend, model, base_url).

    The name defaults to the model (its last path component for local paths) and is what
    ``chosen_model`` / ``judge_scores`` record.
    """
    name = None
    head, sep, rest = spec.partition("=")
    if sep and ":" not in head and "/" not in head:
        name, spec = head, rest
    backend, sep, model = spec.partition(":")
    if not sep or backend not in BACKENDS or not model:
        raise InputError(f"bad judge {spec!r}: expected [NAME=]BACKEND:MODEL[@BASE_URL] with BACKEND one of "
                         f"{', '.join(BACKENDS)}", field="judge")
    base_url = None
    if backend == "openai":
        model, sep, base_url = model.partition("@")
        if not sep or not base_url:
            raise InputError(f"bad judge {spec!r}: the openai backend needs MODEL@BASE_URL", field="judge")
    name = name or model.rstrip("/").rsplit("/", 1)[-1]
    return name, backend, model, base_url


def build_judge(spec: str, settings: GenerationSettings, *, api_key_env: str = "OPENAI_API_KEY",
                concurrency: int = 4, retry: RetryPolicy | None = None) -> Judge:
    name, backend, model, base_url = parse_judge_spec(spec)
    if backend == "openai":
        return OpenAIChatJudge(name, model, base_url, settings, api_key=os.environ.get(api_key_env),
                               concurrency=concurrency, retry=retry)
    if backend == "vllm":
        return VLLMJudge(name, model, settings)
    return TransformersJudge.from_pretrained(name, model, settings)
