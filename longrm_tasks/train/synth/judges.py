"""Judge backends behind one small interface: ``name`` and ``generate(conversations) -> texts``.

- ``OpenAIChatJudge``: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI,
  vLLM/SGLang servers, ...) through the ``openai`` package when installed, else a
  plain ``urllib`` POST, so the package gains no hard dependency;
- ``VLLMJudge``: offline batched generation with ``vllm.LLM.chat``;
- ``TransformersJudge``: ``AutoModelForCausalLM.generate`` on the chat template.

Greedy decoding (temperature 0) by default; with sampling, each backend gets the
seed so reruns agree where the backend honours it.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, Sequence

from longrm_tasks.errors import InputError

Conversation = list[dict]


class Judge(Protocol):
    name: str

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        """One judgment text per conversation, in order."""


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.0
    max_new_tokens: int = 1024
    seed: int = 0


class OpenAIChatJudge:
    """A model behind an OpenAI-compatible chat endpoint; ``base_url`` ends in ``/v1`` as for the
    ``openai`` client. Requests run ``concurrency`` at a time; results keep input order."""

    def __init__(self, name: str, model: str, base_url: str, settings: GenerationSettings, *,
                 api_key: str | None = None, concurrency: int = 4, timeout: float = 600.0, retries: int = 3):
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.api_key = api_key or "EMPTY"  # local servers ignore it; the openai client requires one
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        try:
            import openai
        except ImportError:
            self._openai = self._client = None
        else:
            self._openai = openai
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=timeout,
                                         max_retries=retries)

    def _request(self, messages: Conversation) -> dict:
        return {"model": self.model, "messages": messages, "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_new_tokens, "seed": self.settings.seed}

    def _post(self, messages: Conversation) -> str:
        if self._client is not None:
            try:  # the client already retried rate limits and server errors
                reply = self._client.chat.completions.create(**self._request(messages))
            except self._openai.APIStatusError as err:
                raise InputError(f"{self.name}: {self.base_url} answered HTTP {err.status_code}: {err.message}",
                                 field="judge") from None
            except self._openai.APIError as err:
                raise InputError(f"{self.name}: cannot reach {self.base_url}: {err}", field="judge") from None
            return reply.choices[0].message.content or ""
        body = json.dumps(self._request(messages)).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.load(response)
                return reply["choices"][0]["message"].get("content") or ""
            except urllib.error.HTTPError as err:
                # Rate limits and server errors are worth a retry; a 4xx is a bad request.
                if (err.code < 500 and err.code not in (408, 429)) or attempt == self.retries:
                    raise InputError(f"{self.name}: {self.base_url} answered HTTP {err.code}: "
                                     f"{err.read()[:300].decode('utf-8', 'replace')}", field="judge") from None
            except urllib.error.URLError as err:
                if attempt == self.retries:
                    raise InputError(f"{self.name}: cannot reach {self.base_url}: {err.reason}",
                                     field="judge") from None
            time.sleep(2 ** attempt)
        raise AssertionError("unreachable")

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
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

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        outputs = self.llm.chat(list(conversations), self.params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


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

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        import torch
        from transformers import set_seed

        sampling = self.settings.temperature > 0
        extra = {"do_sample": True, "temperature": self.settings.temperature} if sampling else {"do_sample": False}
        texts = []
        for i, messages in enumerate(conversations):
            inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                        return_dict=True).to(self.model.device)
            set_seed(self.settings.seed + i)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens,
                                          pad_token_id=self.tokenizer.pad_token_id, **extra)
            new = ids[0, inputs["input_ids"].shape[1]:]
            texts.append(self.tokenizer.decode(new, skip_special_tokens=True))
        return texts


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
                concurrency: int = 4) -> Judge:
    name, backend, model, base_url = parse_judge_spec(spec)
    if backend == "openai":
        return OpenAIChatJudge(name, model, base_url, settings, api_key=os.environ.get(api_key_env),
                               concurrency=concurrency)
    if backend == "vllm":
        return VLLMJudge(name, model, settings)
    return TransformersJudge.from_pretrained(name, model, settings)
