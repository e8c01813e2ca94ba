"""What the Long-RewardBench task YAMLs (``task_yamls/``) call into.

- `load_dataset` is every task's ``custom_dataset``: it reads the options lm-eval
  passes (``--metadata`` merged with ``--model_args``, see `lm_eval_options`),
  loads and selects the items, and builds one document per (item, order)
  presentation with the prompt already rendered, measured and fitted to the
  model (`lm_eval_prep`).
- `LongRewardBenchTask` (the YAMLs' ``class``) is lm-eval's `ConfigurableTask`
  with one change of substance: it builds each request's context itself, so the
  pre-rendered prompt is sent as is, and ``--apply_chat_template`` (or a chat
  API model such as ``local-chat-completions``) gets the judge's system + user
  messages instead of the rendered text wrapped in a second template.
- `process_results` turns a document's model outputs into the per-document
  record that the metric aggregations (`lm_eval_metrics`) score with the core.
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from lm_eval.api.task import ConfigurableTask

from longrm_tasks.adapters.lm_eval_metrics import METRICS, record
from longrm_tasks.adapters.lm_eval_options import TaskOptions, parse_options
from longrm_tasks.adapters.lm_eval_plugin import TASK_DIR as task_dir  # noqa: F401  (entry point target)
from longrm_tasks.adapters.lm_eval_prep import VERDICT_TOKENS, Budget, Stats, build_judge_docs, build_rm_docs
from longrm_tasks.adapters.rm_requests import encode_rm_context
from longrm_tasks.errors import InputError
from longrm_tasks.verdicts import parse_judgment, scores_to_ranks

log = logging.getLogger(__name__)

SKIPPED_PROMPT = "(skipped: over max_length)"  # what the model sees for a skipped document; never scored


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


def model_max_length(options: TaskOptions, tokenizer) -> int | None:
    """The context length the model will use, resolved the way lm-eval's hf backend does."""
    if options.max_length:
        return options.max_length
    if options.model:
        from lm_eval.models.utils import resolve_max_length
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(options.model, **dict(options.tokenizer_kwargs))
        except Exception:  # not a transformers checkpoint (e.g. a GGUF or an API name): ask the tokenizer
            config = None
        return resolve_max_length(config, tokenizer)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**12 else None


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
    max_length = model_max_length(options, tokenizer) if tokenizer is not None else options.max_length
    reserve = {"generative": options.gen_tokens, "loglikelihood": VERDICT_TOKENS, "reward": 0}[options.judge]
    if max_length is not None and options.judge == "generative" and max_length <= reserve:
        raise InputError(f"max_length {max_length} leaves no room for the prompt next to {reserve} generated "
                         "tokens", field="max_length")
    budget = Budget(max_length=max_length, reserve=reserve, overlong=options.overlong)
    stats = Stats()
    if options.judge == "reward":
        docs = build_rm_docs(items, options.order.orders_for, tokenizer=tokenizer, budget=budget,
                             orders=str(options.order), stats=stats)
    else:
        docs = build_judge_docs(items, options.order.orders_for, judge=options.judge, tokenizer=tokenizer,
                                budget=budget, parser=options.parser, orders=str(options.order), stats=stats)
    log.warning("Long-RewardBench %s (%s, order %s, max_length %s): %s", options.judge, _slice_name(options),
                options.order, max_length, stats.summary())
    for reason in stats.skip_reasons[:5]:
        log.warning("  skipped %s", reason)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_results(doc: dict, results: list) -> dict:
    """Model outputs of one document -> the same record under every metric name (see `lm_eval_metrics`).

    Generative judge: ``results = [text]``, parsed with the run's verdict parser.
    Log-likelihood judge and reward models: one ``(score, is_greedy)`` per shown
    answer; the highest score wins, ties keep the earlier position.
    """
    if doc["skipped"]:
        predicted = None
    elif doc["judge"] == "generative":
        predicted = parse_judgment(results[0], doc["kind"], doc["n"], doc["parser"])
    else:
        predicted = scores_to_ranks([r[0] if isinstance(r, (tuple, list)) else r for r in results])
    rec = record(doc, predicted)
    return {m.name: rec for m in METRICS}


def request_context(doc: dict, *, system_instruction: str | None = None, chat_template=None):
    """The context lm-eval sends for ``doc``: rendered text, or the chat rendered by the model's template.

    ``chat_template`` is lm-eval's renderer when ``--apply_chat_template`` is on
    (for chat APIs it returns the messages as JSON): it then gets the judge's
    system + user messages (fitted like the text), the system instruction, if
    any, put in front of the judge's system prompt.
    """
    if doc["judge"] == "reward":  # the reward model renders the chat with its own template
        if doc["skipped"]:
            return encode_rm_context([{"role": "user", "content": SKIPPED_PROMPT}], doc["key"])
        return doc["prompt"]
    if doc["skipped"]:
        return SKIPPED_PROMPT
    if chat_template is not None:
        start, end = doc["user_span"]
        system = doc["system"] if not system_instruction else f"{system_instruction}\n\n{doc['system']}"
        return chat_template([{"role": "system", "content": system},
                              {"role": "user", "content": doc["prompt"][start:end]}])
    if not doc["rendered"]:
        raise InputError("the judge prompt was not rendered because no tokenizer was known: pass "
                         "--apply_chat_template, or --metadata '{\"tokenizer\": NAME_OR_PATH}'",
                         line=doc["key"], field="tokenizer")
    return doc["prompt"]


class LongRewardBenchTask(ConfigurableTask):
    """A YAML-configured task whose request contexts come from `request_context`."""

    def __init__(self, config: dict | None = None, **kwargs):
        # lm-eval hands a `class:` task its whole YAML, `class` key included, which TaskConfig rejects.
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        self._warned_system = False
        super().__init__(config=config, **kwargs)

    def fewshot_context(self, doc, num_fewshot=0, system_instruction=None, apply_chat_template=False,
                        fewshot_as_multiturn=False, chat_template=None, gen_prefix=None, **kwargs):
        if num_fewshot:
            raise InputError("Long-RewardBench is zero-shot: each prompt already holds up to 128K tokens",
                             field="num_fewshot")
        # lm-eval binds its renderer to add_generation_prompt=not gen_prefix already.
        chat = chat_template if apply_chat_template and chat_template is not None else None
        if system_instruction and chat is None and doc["judge"] != "reward" and not self._warned_system:
            log.warning("%s: --system_instruction is not added to the pre-rendered judge prompt; add "
                        "--apply_chat_template to send it as part of the system message", self.config.task)
            self._warned_system = True
        return request_context(doc, system_instruction=system_instruction if chat else None, chat_template=chat)

    def construct_requests(self, doc, ctx, **kwargs):
        requests = super().construct_requests(doc, ctx, **kwargs)
        if doc["skipped"] and self.OUTPUT_TYPE == "generate_until":
            requests.arguments[1]["max_gen_toks"] = 1  # the answer is never read: do not pay for it
        return requests

    def process_results(self, doc, results):
        # Only the metrics this task's YAML lists (a slice reports the cells that apply to it).
        wanted = self.aggregation()
        return {name: value for name, value in super().process_results(doc, results).items() if name in wanted}

