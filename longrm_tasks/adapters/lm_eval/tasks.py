"""What the Long-RewardBench task YAMLs (``task_yamls/``) call into.

- `load_dataset` is every task's ``custom_dataset``: it reads the options lm-eval
  passes (``--metadata`` merged with ``--model_args``, see `options`),
  finds the model's real context (`model_context`), loads and selects the
  items, and builds one document per (item, order) presentation with the
  prompt rendered, measured and fitted by the protocol (`longrm_tasks.requests.build`;
  a document is a `Presentation` dict).
- `LongRewardBenchTask` (the YAMLs' ``class``) is lm-eval's `ConfigurableTask`
  with one change of substance: it builds each request's context itself, so the
  pre-rendered prompt is sent as is, and ``--apply_chat_template`` (or a chat
  API model such as ``local-chat-completions``) gets the judge's system + user
  messages instead of the rendered text wrapped in a second template.
  It also makes sure lm-eval never cuts a prompt itself: a request whose
  prompt leaves less than the generation budget asks for only what is left
  (counted as ``extra/short_budget``), and thinking is off on every path.
- `process_results` turns a document's model outputs into the per-document
  record that the metric aggregations (`metrics`) score with the core.

Every result says how it was made: ``results["configs"][task]["metadata"]["longrm"]``
holds the protocol, the context length used and where it came from, the
generation budget, the order scheme, the parser and the data's provenance.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

from lm_eval.api.task import ConfigurableTask

from longrm_tasks.adapters.lm_eval.metrics import METRICS
from longrm_tasks.adapters.lm_eval.options import TaskOptions, parse_options
from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR as task_dir  # noqa: F401  (entry point target)
from longrm_tasks.requests.reward import OVERLONG_SCORE, encode_rm_context
from longrm_tasks.errors import InputError
from longrm_tasks.context.fitting import FitStats, ModelContext, Protocol, generation_room
from longrm_tasks.requests.loglikelihood import opening_for
from longrm_tasks.requests.options import RunOptions
from longrm_tasks.requests.build import build_judge_docs, build_rm_docs
from longrm_tasks.requests.presentation import record
from longrm_tasks.verdicts.parsing import parse_judgment, scores_to_ranks

log = logging.getLogger(__name__)

SKIPPED_PROMPT = "(skipped: over max_length)"  # what the model sees for a skipped document; never scored
THINKING_MARKERS = ("<think>", "</think>")  # Qwen3 / DeepSeek-R1 style thinking blocks
NO_THINKING = {"enable_thinking": False}  # chat-template argument that switches thinking off


@dataclass(frozen=True)
class _Built:
    """What `load_dataset` decided for the task being built, read by `LongRewardBenchTask.__init__` (which
    runs the loader synchronously): the typed options, the tokenizer, and the `longrm` entry of the task's
    metadata in the results (plain names: lm-eval stores and prints it)."""

    run: RunOptions | None = None
    tokenizer: object = None
    metadata: dict = field(default_factory=dict)


_last_built = _Built()


@lru_cache(maxsize=4)
def _benchmark(data_dir: str, revision: str | None):
    from longrm_tasks.data import load_benchmark

    bench = load_benchmark(data_dir, revision=revision)
    for warning in bench.warnings:
        log.warning("Long-RewardBench data: %s", warning)
    return bench


def _data_key(data_dir: str) -> str:
    # The cache key must not depend on the working directory's spelling of a folder.
    return data_dir if data_dir in ("hub", "sample") else os.path.abspath(os.path.expanduser(data_dir))


@lru_cache(maxsize=4)
def load_tokenizer(name: str, kwargs: tuple = ()):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, **dict(kwargs))
    except Exception as err:  # hub, file and format errors come in many types
        raise InputError(f"cannot load the tokenizer to measure prompts with ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); pass --metadata "
                         "'{\"tokenizer\": NAME_OR_PATH}'", path=name, field="tokenizer") from None


def model_context(options: TaskOptions, tokenizer) -> ModelContext:
    """The model's real context length and where it came from, per backend.

    API models (``base_url``): ``max_length`` or the server's own report, as lm-eval and the server
    apply it (`api_context.api_model_context`); otherwise ``max_length`` (hf, or --metadata),
    ``max_model_len`` (vLLM), then the model config / tokenizer the way lm-eval's hf backend resolves it.
    """
    if options.base_url and tokenizer is None:  # nothing is measured: chat messages go out as they are
        if options.max_length:
            return ModelContext(options.max_length, "max_length argument")
        return ModelContext(None, "unknown (no tokenizer to measure prompts with)")
    if options.base_url:
        from longrm_tasks.adapters.lm_eval.api_context import api_model_context

        return api_model_context(options.base_url, options.model, max_length=options.max_length,
                                 tokenized_requests=options.tokenized_requests)
    if options.max_length:
        return ModelContext(options.max_length, "max_length argument")
    if options.max_model_len:
        return ModelContext(options.max_model_len, "vLLM max_model_len argument")
    if options.model:
        from longrm_tasks import compat

        resolve_max_length = compat.lm_eval_resolve_max_length()
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(options.model, **dict(options.tokenizer_kwargs))
        except Exception:  # not a transformers checkpoint (e.g. a GGUF or an API name): ask the tokenizer
            config = None
        value = resolve_max_length(config, tokenizer) if tokenizer is not None or config is not None else None
        return ModelContext(value, f"{options.model} config (as lm-eval's hf backend resolves it)")
    limit = getattr(tokenizer, "model_max_length", None)
    if limit and limit < 10**12:
        return ModelContext(int(limit), "tokenizer model_max_length")
    return ModelContext(None, "unknown")


def _slice_name(options: TaskOptions) -> str:
    parts = [",".join(options.tasktypes) if options.tasktypes else "", ",".join(options.configs or ())]
    return " ".join(p for p in parts if p) or "all"


def _refuse_wrong_model_kind(judge: str, pretrained) -> None:
    """Fail before any data is built when the checkpoint cannot do what the tasks ask.

    Judge tasks need a causal LM; the ``_rm`` tasks need a sequence classifier
    (a causal LM under ``--model hf`` would return log-likelihoods of the
    request's JSON, meaningless numbers that still produce a score). Only local
    checkpoints are inspected (reading a hub config could reach the network);
    `hf-rm` itself refuses generation requests.
    """
    if not isinstance(pretrained, str) or not (Path(pretrained) / "config.json").is_file():
        return
    try:
        archs = json.loads((Path(pretrained) / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return
    if not archs:
        return
    scalar = all(str(a).endswith("ForSequenceClassification") for a in archs)
    if judge != "reward" and scalar:
        raise InputError(f"{pretrained} is a scalar reward model ({archs[0]}): the {judge} judge tasks need a "
                         "causal LM; run scalar reward models with `--model hf-rm --tasks long_rewardbench_rm`",
                         field="pretrained")
    if judge == "reward" and all(str(a).endswith("ForCausalLM") for a in archs):
        raise InputError(f"{pretrained} is a causal LM ({archs[0]}): the long_rewardbench_rm tasks score with a "
                         "sequence-classification reward model under `--model hf-rm`; judge with a causal LM "
                         "through `--tasks long_rewardbench` (generative) or `long_rewardbench_ll`",
                         field="pretrained")


def load_dataset(**kwargs):
    """``custom_dataset`` of every Long-RewardBench task: a ``DatasetDict`` with one ``test`` split."""
    try:
        return _load_dataset(kwargs)
    except InputError as err:
        # Under plain `lm_eval` the exception propagates through lm-eval's own frames; say it in one line first.
        if not getattr(err, "announced", False):
            print(f"Long-RewardBench: {err}", file=sys.stderr)
            err.announced = True  # said once: neither `longrm eval` nor plain lm_eval's exit repeats it
        raise


def _data_provenance(bench) -> dict | None:
    provenance = getattr(bench, "provenance", None)
    return provenance.as_dict() if hasattr(provenance, "as_dict") else provenance


def _load_dataset(kwargs: dict):
    import datasets

    from longrm_tasks.data import select

    options = parse_options(kwargs)
    _refuse_wrong_model_kind(options.judge, kwargs.get("pretrained"))
    bench = _benchmark(_data_key(options.data_dir), options.revision)
    items = select(bench.items, configs=options.configs, tasktypes=options.tasktypes)
    if not items:
        raise InputError(f"no {_slice_name(options)} items in {bench.source} (configs there: "
                         f"{', '.join(bench.files)})", path=options.data_dir, field="data_dir")
    tokenizer = load_tokenizer(options.tokenizer, options.tokenizer_kwargs) if options.tokenizer else None
    if tokenizer is None:
        log.warning("Long-RewardBench: no tokenizer known (no `pretrained`/`tokenizer` model argument, no "
                    "--metadata tokenizer): prompts are not measured or fitted; the model receives chat "
                    "messages, so run with --apply_chat_template")
    context = model_context(options, tokenizer)
    run = options.run
    # A backend that adds its own BOS to a text prompt must not get ours too.
    strip = bool(options.base_url) and (options.tokenized_requests is False or bool(options.add_bos_token))
    fitting = run.fitting(options.judge, context.tokens, strip_bos=strip)
    if options.judge == "generative":
        fitting.refuse_no_room("max_length", "; pass the budget you generate with as --metadata max_gen_toks=N "
                                             "(and --gen_kwargs max_gen_toks=N)")
    stats = FitStats()
    if options.judge == "reward":
        docs = build_rm_docs(items, run.order.orders_for, tokenizer=tokenizer, fitting=fitting,
                             orders=str(run.order), stats=stats)
    else:
        docs = build_judge_docs(items, run.order.orders_for, judge=options.judge, tokenizer=tokenizer,
                                fitting=fitting, parser=run.parser, orders=str(run.order), stats=stats)
    log.warning("Long-RewardBench %s (%s, protocol %s, order %s): max_length %s from %s; %s", options.judge,
                _slice_name(options), run.protocol, run.order,
                f"{context.tokens:,}" if context.tokens else "unknown", context.source, stats.summary())
    for reason in stats.reasons[:5]:
        log.warning("  %s", reason)
    global _last_built
    _last_built = _Built(run, tokenizer, {
        "protocol": run.protocol.value, "overlong": "wrong" if run.protocol is Protocol.PAPER else run.overlong.value,
        "order": str(run.order), "parser": run.parser, "max_length": context.tokens,
        "max_length_source": context.source, "gen_tokens": run.gen_tokens if options.judge == "generative" else None,
        "data": _data_provenance(bench), "fit": stats.as_dict(),
    })
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_results(doc: dict, results: list, *, gen_tokens: int | None = None,
                    prompt_tokens: int | None = None) -> dict:
    """Model outputs of one document -> the same record under every metric name (see `metrics`).

    Generative judge: ``results = [text]``, parsed with the run's verdict parser
    (skipped and over-long documents are never parsed: over-long ones score 0).
    Log-likelihood judge and reward models: one ``(score, is_greedy)`` per shown
    answer; the highest score wins, ties keep the earlier position.
    ``gen_tokens``: the generation budget of the run, to count documents that
    had less room (`short_budget`).
    """
    thinking = short = False
    if doc["skipped"] or doc.get("overlong"):
        predicted = None
    elif doc["judge"] == "generative":
        text = results[0]
        thinking = any(marker in text for marker in THINKING_MARKERS)
        predicted = parse_judgment(text, doc["kind"], doc["n"], doc["parser"])
        short = gen_tokens is not None and _room(doc, gen_tokens, prompt_tokens).status != "ok"
    else:
        scores = [r[0] if isinstance(r, (tuple, list)) else r for r in results]
        predicted = scores_to_ranks(scores)
        if doc["judge"] == "reward" and scores and all(s == OVERLONG_SCORE for s in scores):
            doc = {**doc, "overlong": True}  # the reward model could not hold it (paper): wrong, counted
    rec = record(doc, predicted, short_budget=short, thinking=thinking)
    return {m.name: rec for m in METRICS}


def _room(doc: dict, gen_tokens: int, prompt_tokens: int | None = None):
    """Room left for generation; ``prompt_tokens``: the context as sent, when it differs from the doc's prompt."""
    max_length = doc.get("max_length", -1)
    tokens = doc["prompt_tokens"] if prompt_tokens is None else prompt_tokens
    if tokens < 0 or max_length is None or max_length < 0:
        return generation_room(0, None, gen_tokens)
    return generation_room(tokens, max_length, gen_tokens)


def request_context(doc: dict, *, system_instruction: str | None = None, chat_template=None):
    """The context lm-eval sends for ``doc``: rendered text, or the chat rendered by the model's template.

    ``chat_template`` is lm-eval's renderer when ``--apply_chat_template`` is on
    (for chat APIs it returns the messages as JSON): it then gets the judge's
    system + user messages (fitted like the text), the system instruction, if
    any, put in front of the judge's system prompt.
    """
    if doc["judge"] == "reward":  # the reward model renders the chat with its own template
        if doc["skipped"] or doc.get("overlong"):
            return encode_rm_context([{"role": "user", "content": SKIPPED_PROMPT}], doc["key"])
        return doc["prompt"]
    if doc["skipped"] or doc.get("overlong"):  # a placeholder whose answer is never read; chat APIs take messages
        return SKIPPED_PROMPT if chat_template is None else chat_template([{"role": "user", "content": SKIPPED_PROMPT}])
    if chat_template is not None:
        start, end = doc["user_span"]
        if doc["rendered"] and end <= start:
            raise InputError("this tokenizer's prompt cannot be split back into chat messages (its chat template "
                             "edits the content, or it has none): run without --apply_chat_template, the prompt "
                             "is already rendered", line=doc["key"], field="apply_chat_template")
        system = doc["system"] if not system_instruction else f"{system_instruction}\n\n{doc['system']}"
        ctx = chat_template([{"role": "system", "content": system},
                             {"role": "user", "content": doc["prompt"][start:end]}])
        # log-likelihood v2: the rendered prompt ended with the verdict's opening; so must this render
        opening = opening_for(doc["choices"]) if doc["judge"] == "loglikelihood" else ""
        return ctx + opening if opening and isinstance(ctx, str) and not _is_chat_messages(ctx) else ctx
    if not doc["rendered"]:
        raise InputError("the judge prompt was not rendered because no tokenizer was known: pass "
                         "--apply_chat_template, or --metadata '{\"tokenizer\": NAME_OR_PATH}'",
                         line=doc["key"], field="tokenizer")
    return doc["prompt"]


def _thinking_off(chat_template) -> None:
    """Switch thinking off in a local model's own chat-template renderer (hf, vLLM), unless the user set it.

    lm-eval hands the task ``partial(lm.apply_chat_template, ...)``; hf renders
    with ``lm.chat_template_args``, vLLM with ``lm.enable_thinking``.
    """
    lm = getattr(chat_template.func if isinstance(chat_template, partial) else chat_template, "__self__", None)
    if lm is None:
        return
    args = getattr(lm, "chat_template_args", None)
    if isinstance(args, dict) and "enable_thinking" not in args:
        args.update(NO_THINKING)
    if hasattr(lm, "enable_thinking") and getattr(lm, "enable_thinking") is None:
        lm.enable_thinking = False


def _is_chat_messages(ctx) -> bool:
    """lm-eval's chat-API context (``JsonChatStr``: the messages as JSON, sent as chat messages)."""
    return type(ctx).__name__ == "JsonChatStr" or isinstance(ctx, list)


class LongRewardBenchTask(ConfigurableTask):
    """A YAML-configured task whose request contexts come from `request_context`."""

    def __init__(self, config: dict | None = None, **kwargs):
        # lm-eval hands a `class:` task its whole YAML, `class` key included, which TaskConfig rejects.
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        self._warned_system = False
        self._thinking_checked = False
        self._ctx_tokens: dict[tuple, int] = {}  # (key, presentation) -> tokens of a chat-rendered context
        global _last_built
        _last_built = _Built()
        super().__init__(config=config, **kwargs)  # runs load_dataset, which sets _last_built
        built = _last_built
        self._longrm, self._tokenizer = dict(built.metadata), built.tokenizer
        self._fit = built.run is not None and built.run.protocol is Protocol.FIT
        self._fitted_for = self._longrm.pop("gen_tokens", None)  # fit: the budget the prompts were cut for
        if self._longrm:
            if self.OUTPUT_TYPE == "generate_until":
                self._longrm["gen_tokens"] = self._gen_tokens()
            metadata = self.config.metadata if isinstance(self.config.metadata, dict) else {}
            metadata["longrm"] = self._longrm
            self.config.metadata = metadata
            if self._fit:  # the tables say it too, not only the JSON
                alias = self.config.task_alias or self.config.task
                self.config.task_alias = f"{alias} [protocol {self._longrm['protocol']}]"

    def _gen_tokens(self) -> int | None:
        gen = (self.config.generation_kwargs or {}).get("max_gen_toks")
        return int(gen) if gen is not None else None

    def set_config(self, key: str, value, update: bool = False) -> None:
        super().set_config(key, value, update=update)
        if key == "generation_kwargs" and self._longrm and self.OUTPUT_TYPE == "generate_until":
            self._generation_budget_changed()

    def _generation_budget_changed(self) -> None:
        """``--gen_kwargs max_gen_toks`` reaches the task after its documents were built: say what it means."""
        gen = self._gen_tokens()
        before, self._longrm["gen_tokens"] = self._longrm.get("gen_tokens"), gen
        if self._fit:
            before = self._fitted_for
        if gen is None or gen == before:
            return
        docs = self.test_docs() or []
        short = sum(_room(d, gen).status == "short_budget" for d in docs if not (d["skipped"] or d.get("overlong")))
        if self._fit:
            log.warning("%s: --gen_kwargs max_gen_toks=%d differs from the %s tokens the prompts were fitted for "
                        "(--metadata max_gen_toks): %d prompts will generate fewer tokens than asked, none is cut",
                        self.config.task, gen, before, short)
        else:
            log.warning("%s: generation budget %d tokens (--gen_kwargs); %d prompts leave less room in the "
                        "model's context and generate only what is left", self.config.task, gen, short)

    def fewshot_context(self, doc, num_fewshot=0, system_instruction=None, apply_chat_template=False,
                        fewshot_as_multiturn=False, chat_template=None, gen_prefix=None, **kwargs):
        if num_fewshot:
            raise InputError("Long-RewardBench is zero-shot: each prompt already holds up to 128K tokens",
                             field="num_fewshot")
        # lm-eval binds its renderer to add_generation_prompt=not gen_prefix already.
        chat = chat_template if apply_chat_template and chat_template is not None else None
        if chat is not None and not self._thinking_checked:
            _thinking_off(chat)
            self._thinking_checked = True
        if system_instruction and chat is None and doc["judge"] != "reward" and not self._warned_system:
            log.warning("%s: --system_instruction is not added to the pre-rendered judge prompt; add "
                        "--apply_chat_template to send it as part of the system message", self.config.task)
            self._warned_system = True
        ctx = request_context(doc, system_instruction=system_instruction if chat else None, chat_template=chat)
        if chat is not None and isinstance(ctx, str) and self._tokenizer is not None and doc["judge"] != "reward":
            # Rendered by lm-eval's model: measure what is sent (system instruction, template differences).
            from longrm_tasks.requests.build import Measurer

            self._ctx_tokens[(doc["key"], doc["presentation"])] = Measurer(self._tokenizer).seen_by_model(ctx)
        return ctx

    def construct_requests(self, doc, ctx, **kwargs):
        requests = super().construct_requests(doc, ctx, **kwargs)
        if self.OUTPUT_TYPE != "generate_until":
            return requests
        gen_kwargs = requests.arguments[1]
        if _is_chat_messages(ctx):  # a chat API renders the template itself: ask it to keep thinking off
            gen_kwargs.setdefault("chat_template_kwargs", dict(NO_THINKING))
        if doc["skipped"] or doc.get("overlong"):
            gen_kwargs["max_gen_toks"] = 1  # the answer is never read: do not pay for it
            return requests
        gen = gen_kwargs.get("max_gen_toks")
        if gen is not None:
            room = _room(doc, int(gen), self._ctx_tokens.get((doc["key"], doc["presentation"])))
            if room.status != "ok":  # lm-eval would cut the prompt from the left to make room
                gen_kwargs["max_gen_toks"] = max(1, room.gen_tokens)
        return requests

    def process_results(self, doc, results):
        # Only the metrics this task's YAML lists (a slice reports the cells that apply to it).
        wanted = self.aggregation()
        values = process_results(doc, results, gen_tokens=self._gen_tokens(),
                                 prompt_tokens=self._ctx_tokens.get((doc["key"], doc["presentation"])))
        return {name: value for name, value in values.items() if name in wanted}
