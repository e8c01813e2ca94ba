"""``--model hf-rm``: a scalar reward model (``AutoModelForSequenceClassification``) inside lm-eval.

lm-eval knows language models; a reward model only scores a finished chat.
The ``long_rewardbench_rm*`` tasks are ``multiple_choice`` tasks whose
requests carry the item's chat messages as JSON in ``context`` (see
`longrm_tasks.requests.reward`) and one candidate answer in
``continuation``. Here every request of one item is collected, the item is
scored by `longrm_tasks.rm.prefix_scorer.RewardScorer` (which encodes the
shared context once), and each request gets ``(reward, False)`` back.

Over-long items follow the protocol the request carries (``--metadata
protocol``, see `longrm_tasks.requests.reward`): ``paper`` (the default) is the
reference evaluator's — each candidate rendered as prompt + assistant turn, a
sequence of >= 131,072 tokens keeps its first 65,536 and last 65,531 tokens —
and an item still beyond the model's context (``max_length``, else the model's
positional limit) is not scored: its candidates get ``-inf``
(`requests.reward.OVERLONG_SCORE`) and the task scores it wrong and counts it in
``extra/overlong``. ``fit`` uses the ``truncation`` model argument (``middle``
by default); candidates of an item it could not score (too long under
``truncation=skip``) get ``nan``.

Scale-out follows lm-eval's own ``hf`` model:

- data parallel: under ``accelerate launch`` or ``torchrun`` each process holds
  one copy of the model on its own device (GPU ``LOCAL_RANK``, or the CPU with
  gloo) and exposes ``rank``/``world_size``. lm-eval's evaluator then builds
  only this rank's documents (``build_all_requests(rank=, world_size=)``), so
  every candidate of an item lands on one rank, and it gathers the per-document
  metrics on rank 0 (``gather_object``), so the metrics equal a single process.
- model parallel: ``parallelize=True`` (``device_map="auto"``, with
  ``max_memory_per_gpu``/``max_cpu_memory``/``offload_folder``) or an explicit
  ``device_map`` spreads one model over several GPUs; combined with
  ``accelerate launch`` each process takes its share of the GPUs.

Generation and plain-text requests fail at once: a scalar reward model cannot
judge in words, and the message names the task group that fits it.

    lm_eval --model hf-rm --model_args pretrained=Skywork/Skywork-Reward-V2-Llama-3.1-8B,max_length=131072 \\
        --tasks long_rewardbench_rm
    accelerate launch --multi_gpu --num_processes 8 -m lm_eval --model hf-rm --model_args pretrained=... \\
        --tasks long_rewardbench_rm

Registration: this module registers nothing itself. lm-eval finds ``hf-rm``
through the ``lm_eval.models`` entry point or, until lm-eval reads those, the
lazy placeholder `longrm_tasks.adapters.lm_eval.plugin.register_models` adds;
both point at the same ``MODEL_TARGETS`` entry.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from lm_eval.api.model import LM

from longrm_tasks.errors import InputError, announced, closest_name
from longrm_tasks.context.fitting import Protocol
from longrm_tasks.rm.formatting import ScoringItem
from longrm_tasks.requests.reward import OVERLONG_SCORE, decode_rm_context

RM_GROUP = "long_rewardbench_rm"
WRONG_TASK = (f"{{model}} is a scalar reward model: it scores the chats of the {RM_GROUP} tasks (e.g. "
              f"--tasks {RM_GROUP}) and cannot {{what}}. Use --model hf (or vllm, local-chat-completions) "
              f"for the generative long_rewardbench and long_rewardbench_ll groups.")


def say_input_errors(method):
    """Under plain ``lm_eval`` an `InputError` propagates through lm-eval's frames as a long traceback:
    `errors.announced` prints it as one line on stderr first (once), then lets it propagate."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with announced(self.MODEL_NAME):
            return method(self, *args, **kwargs)

    return wrapper


def check_model_args(cls, given: dict[str, Any], model: str) -> None:
    """Refuse unknown ``--model_args`` keys with the closest known name (a typo must not be ignored)."""
    known = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "unused")]
    for key in sorted(given):
        close = closest_name(key, known)
        hint = f"did you mean {close!r}? " if close else ""
        raise InputError(f"unknown {model} model arg {key!r} ({hint}known: {', '.join(known)})", field="model_args")


class RewardModelLM(LM):
    """lm-eval plumbing shared by ``hf-rm`` and ``vllm-rm``: requests -> items -> scorer -> ``(reward, False)``.

    Subclasses set ``self.scorer`` (anything with ``score(items) -> list[ItemScore]``
    and ``tokenizer``) and, when they run data parallel, ``_rank``/``_world_size``.
    The collectives lm-eval's evaluator calls go through ``torch.distributed``
    (``_group``: the process group to use, None = the default one).
    """

    MODEL_NAME = "reward model"

    def __init__(self):
        super().__init__()
        self.item_scores = []  # every ItemScore of this run, for the token accounting
        self.overlong_items = 0  # paper items beyond the model's context (scored wrong by the task)
        self._explicit_truncation: str | None = None  # a `truncation` model arg the paper protocol overrides
        self._group = None
        self._device = "cpu"  # where the evaluator puts its rank-count tensor; subclasses set their own

    # lm-eval passes --batch_size/--device as `additional_config`; the same keys in
    # --model_args are more specific and win instead of clashing as duplicate kwargs.
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None):
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    # -- requests ------------------------------------------------------------

    @say_input_errors
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items, slots = group_requests([req.args for req in requests], self.MODEL_NAME)
        self._say_protocol_wins(items)
        results = self.scorer.score(items)
        self.item_scores += results
        overlong = [item.protocol is Protocol.PAPER and result.skipped for item, result in zip(items, results)]
        self.overlong_items += sum(overlong)
        out: list[tuple[float, bool]] = []
        for request, (item_index, candidate_index) in zip(requests, slots):
            result = results[item_index]
            if result.skipped:
                answer = (OVERLONG_SCORE if overlong[item_index] else math.nan, False)
            else:
                answer = (result.scores[candidate_index], False)
            self.cache_hook.add_partial("loglikelihood", request.args, answer)
            out.append(answer)
        print_token_summary(self.item_scores, self._summary_name(), overlong=self.overlong_items)
        return out

    def _say_protocol_wins(self, items: Sequence[ScoringItem]) -> None:
        """One line when a ``truncation`` model arg meets paper-protocol requests: the protocol decides."""
        given = self._explicit_truncation
        if given and given != "paper" and any(item.protocol is Protocol.PAPER for item in items):
            print(f"{self.MODEL_NAME}: truncation={given} does not apply: the task's protocol is 'paper' (the "
                  f"reference's 131,072-token rule, items beyond max_length scored wrong); pass --metadata "
                  f"protocol=fit to use it", file=sys.stderr)
            self._explicit_truncation = None  # said once

    @say_input_errors
    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise InputError(WRONG_TASK.format(model=self.MODEL_NAME, what="compute perplexities"))

    @say_input_errors
    def generate_until(self, requests, disable_tqdm: bool = False):
        raise InputError(WRONG_TASK.format(model=self.MODEL_NAME, what="generate text"))

    def _summary_name(self) -> str:
        return self.MODEL_NAME if self.world_size == 1 else f"{self.MODEL_NAME}[rank {self.rank}/{self.world_size}]"

    # -- chat templates (--apply_chat_template) ------------------------------

    @property
    def tokenizer_name(self) -> str:
        return self.scorer.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.scorer.tokenizer.chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Pass our encoded requests through untouched: the scorer applies the RM's template itself."""
        for message in chat_history:
            if decode_rm_context(message.get("content", "")) is not None:
                return message["content"]
        return self.scorer.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                         add_generation_prompt=add_generation_prompt)

    # -- collectives the evaluator uses when world_size > 1 --------------------

    def _collective_device(self):
        import torch
        import torch.distributed as dist

        # gloo groups (CPU runs, vLLM's cpu_group) move CPU tensors only.
        return torch.device("cpu") if dist.get_backend(self._group) == "gloo" else self.device

    def all_gather(self, tensor):
        if self.world_size <= 1:
            return tensor
        import torch
        import torch.distributed as dist

        local = tensor.reshape(1) if tensor.dim() == 0 else tensor
        local = local.to(self._collective_device())
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local, group=self._group)
        return torch.cat(parts)

    def gather_object(self, obj, dst: int = 0):
        if self.world_size <= 1:
            return [obj]
        import torch.distributed as dist

        result = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, result, dst=dst, group=self._group)
        return result

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(group=self._group)


class HFRewardModel(RewardModelLM):
    """lm-eval model wrapping a sequence-classification reward model through `RewardScorer`.

    Model args: ``pretrained`` (path or hub id), ``tokenizer`` (defaults to
    ``pretrained``), ``dtype`` (``auto``: bf16 on GPU, fp32 on CPU),
    ``device``, ``batch_size`` (candidates per forward pass), ``max_length``
    (default: the model's positional limit), ``truncation`` for ``fit``-protocol
    requests (``middle``, the default, keeps the head and tail of the context
    and every answer; ``paper``; ``skip``; ``paper`` requests always get the
    paper rule),
    ``share_prefix`` (encode an item's shared context once; ``false`` = one full
    forward per candidate, the reference behaviour), ``prefill_chunk_size``,
    ``parallelize`` / ``device_map`` / ``max_memory_per_gpu`` /
    ``max_cpu_memory`` / ``offload_folder`` (one model over several devices, as
    lm-eval's ``hf``), ``trust_remote_code``.
    """

    MODEL_NAME = "hf-rm"

    @say_input_errors
    def __init__(self, pretrained: str, tokenizer: str | None = None, dtype: str | None = "auto",
                 device: str | None = None, batch_size: int | str | None = 4, max_length: int | None = None,
                 truncation: str | None = None, share_prefix: bool = True, prefill_chunk_size: int | None = None,
                 max_batch_size: int | None = None, progress: bool = True, parallelize: bool = False,
                 device_map: str | None = None, max_memory_per_gpu: int | str | None = None,
                 max_cpu_memory: int | str | None = None, offload_folder: str | None = "./offload",
                 trust_remote_code: bool = False, **unused: Any):
        super().__init__()
        import torch

        from longrm_tasks.rm.prefix_scorer import RewardScorer

        check_model_args(type(self), unused, self.MODEL_NAME)
        device = _usable_device(device, torch)
        accelerator = _data_parallel_accelerator(device, torch)
        if accelerator is not None:
            # One model copy per process on its own device; lm-eval shards the documents by rank.
            self.accelerator = accelerator
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
            device = str(accelerator.device)
        parallel = model_parallel_args(
            parallelize=_flag(parallelize), device_map=device_map, max_memory_per_gpu=max_memory_per_gpu,
            max_cpu_memory=max_cpu_memory, offload_folder=offload_folder,
            gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0,
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_processes=int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if accelerator is not None else 1)
        self.scorer = RewardScorer.from_pretrained(
            pretrained, dtype=dtype, device=device, tokenizer=tokenizer, max_length=max_length,
            share_prefix=_flag(share_prefix), batch_size=_batch_size(batch_size, max_batch_size),
            # one progress bar per run, not one per rank
            prefill_chunk_size=prefill_chunk_size, truncation=truncation or "middle",
            progress=_flag(progress) and self.rank == 0, trust_remote_code=_flag(trust_remote_code), **parallel)
        self._explicit_truncation = truncation
        self._device = self.scorer.device
        self.pretrained = pretrained


def model_parallel_args(*, parallelize: bool, device_map: str | dict | None, max_memory_per_gpu, max_cpu_memory,
                        offload_folder: str | None, gpus: int, local_rank: int, local_processes: int) -> dict:
    """``from_pretrained`` keyword arguments that spread one model over devices (empty: one device).

    As lm-eval's ``hf`` model: ``parallelize=True`` means ``device_map="auto"``
    over the GPUs this process may use — all of them, or under a multi-process
    launch every ``local_processes``-th GPU starting at ``local_rank`` — each
    capped at ``max_memory_per_gpu`` when given, with ``max_cpu_memory`` for
    layers that spill to the CPU.
    """
    if not parallelize and device_map is None:
        return {}
    mine = [g for g in range(gpus) if g % local_processes == local_rank % local_processes]
    max_memory: dict | None = None
    if mine and (max_memory_per_gpu is not None or local_processes > 1):
        from accelerate.utils import get_max_memory

        available = get_max_memory() if max_memory_per_gpu is None else {}
        max_memory = {g: max_memory_per_gpu if max_memory_per_gpu is not None else available[g] for g in mine}
    if max_cpu_memory is not None:
        max_memory = {**(max_memory or {}), "cpu": max_cpu_memory}
    return {"device_map": device_map or "auto", "max_memory": max_memory, "offload_folder": offload_folder}


def group_requests(args: Sequence[tuple[str, str]], model: str = "hf-rm") \
        -> tuple[list[ScoringItem], list[tuple[int, int]]]:
    """One `ScoringItem` per distinct context, and for each request its (item, candidate) slot.

    Requests of the same item share a context string, so grouping on it lets the
    scorer see all candidates of an item together (and encode their prefix once).
    lm-eval pads a data-parallel rank's requests with copies of its last one; a
    copy joins its own item as a repeated candidate, which the scorer runs once.
    """
    index_of: dict[str, int] = {}  # context -> item index
    decoded_items: list[dict] = []
    candidates: list[list[str]] = []
    slots: list[tuple[int, int]] = []
    for context, continuation in args:
        index = index_of.get(context)
        if index is None:
            decoded = decode_rm_context(context)
            if decoded is None:
                raise InputError(WRONG_TASK.format(model=model, what="score a plain-text prompt"))
            index = index_of[context] = len(decoded_items)
            decoded_items.append(decoded)
            candidates.append([])
        candidates[index].append(continuation)
        slots.append((index, len(candidates[index]) - 1))
    items = [ScoringItem(d["messages"], c, d["item"] or None, d["protocol"])
             for d, c in zip(decoded_items, candidates)]
    return items, slots


def print_token_summary(results, name: str = "hf-rm", overlong: int = 0) -> None:
    """One line on stderr per process: what its share of the run cost and what over-long handling did.

    ``overlong``: how many of the unscored items were paper items beyond the model's context (scored wrong);
    the rest were skipped by the ``fit`` policy.
    """
    from longrm_tasks.rm.prefix_scorer import token_summary

    s = token_summary(results)
    passes = "" if s["forward_passes"] is None else f"; {s['forward_passes']} forward passes"
    print(f"{name}: {s['items']} items scored; tokens processed / unique = {s['tokens_ratio']:.3f} "
          f"({s['tokens_processed']} / {s['unique_tokens']}, {s['padding_tokens']} padding); "
          f"truncated {s['truncated']} items ({s['dropped_tokens']} tokens dropped); "
          f"skipped {s['skipped'] - overlong} items; over-long {overlong} items (scored wrong){passes}",
          file=sys.stderr)


def _data_parallel_accelerator(device: str, torch):
    """An ``Accelerator`` when launched as several processes (accelerate launch / torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # cpu=True picks gloo and the CPU (accelerate would otherwise stay single-process without a GPU).
    on_cpu = torch.device(device).type == "cpu" or not torch.cuda.is_available()
    # A long timeout as lm-eval's hf model: ranks wait for each other's share of long items.
    accelerator = Accelerator(cpu=on_cpu, kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
    return accelerator if accelerator.num_processes > 1 else None


def _usable_device(device: str | None, torch) -> str:
    # lm-eval's CLI passes device="cuda:0" by default, also on machines without a GPU.
    if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _flag(value) -> bool:
    """lm-eval parses ``key=true`` into a bool, but a value can still arrive as a string."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _batch_size(batch_size: int | str | None, max_batch_size: int | None) -> int:
    # "auto" (lm-eval's memory probing) has no meaning for item-wise scoring: use the cap or 4.
    if isinstance(batch_size, str) and batch_size.startswith("auto"):
        return int(max_batch_size or 4)
    return int(batch_size or 4)
