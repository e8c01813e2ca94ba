"""``--model hf-rm``: a scalar reward model (``AutoModelForSequenceClassification``) inside lm-eval.

lm-eval knows language models; a reward model only scores a finished chat.
The ``long_rewardbench_rm*`` tasks are ``multiple_choice`` tasks whose
requests carry the item's chat messages as JSON in ``context`` (see
`longrm_tasks.adapters.rm_requests`) and one candidate answer in
``continuation``. Here every request of one item is collected, the item is
scored by `longrm_tasks.rm.prefix_scorer.RewardScorer` (which encodes the
shared context once), and each request gets ``(reward, False)`` back.
Candidates of an item that could not be scored (too long under
``truncation=skip``) get ``nan``: the task counts them as skipped.

Generation and plain-text requests fail at once: a scalar reward model cannot
judge in words, and the message names the task group that fits it.

    lm_eval --model hf-rm --model_args pretrained=Skywork/Skywork-Reward-V2-Llama-3.1-8B,max_length=131072 \\
        --tasks long_rewardbench_rm
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

# Importing lm_eval.models registers lm-eval's own models; registering ours into
# an empty registry first would make them vanish (lm_eval/api/registry.py, get_model).
import lm_eval.models  # noqa: F401
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from longrm_tasks.adapters.rm_requests import decode_rm_context
from longrm_tasks.rm.formatting import ScoringItem

RM_GROUP = "long_rewardbench_rm"
WRONG_TASK = (f"hf-rm is a scalar reward model: it scores the chats of the {RM_GROUP} tasks (e.g. "
              f"--tasks {RM_GROUP}) and cannot {{what}}. Use --model hf (or vllm, local-chat-completions) "
              f"for the generative long_rewardbench and long_rewardbench_ll groups.")


@register_model("hf-rm")
class HFRewardModel(LM):
    """lm-eval model wrapping a sequence-classification reward model through `RewardScorer`.

    Model args: ``pretrained`` (path or hub id), ``tokenizer`` (defaults to
    ``pretrained``), ``dtype`` (``auto``: bf16 on GPU, fp32 on CPU),
    ``device``, ``batch_size`` (candidates per forward pass), ``max_length``
    (default: the model's positional limit), ``truncation`` (``middle`` keeps
    the head and tail of the context and every answer; ``paper``; ``skip``),
    ``share_prefix`` (encode an item's shared context once; ``false`` = one full
    forward per candidate, the reference behaviour), ``prefill_chunk_size``.
    """

    def __init__(self, pretrained: str, tokenizer: str | None = None, dtype: str | None = "auto",
                 device: str | None = None, batch_size: int | str | None = 4, max_length: int | None = None,
                 truncation: str = "middle", share_prefix: bool = True, prefill_chunk_size: int | None = None,
                 max_batch_size: int | None = None, progress: bool = True, **unused: Any):
        super().__init__()
        import torch
        from transformers import AutoTokenizer

        from longrm_tasks.rm.prefix_scorer import RewardScorer

        if unused:
            raise ValueError(f"hf-rm: unknown model args {sorted(unused)}")
        device = _usable_device(device, torch)
        self._device = torch.device(device)
        tok = AutoTokenizer.from_pretrained(tokenizer or pretrained)
        self.scorer = RewardScorer.from_pretrained(
            pretrained, dtype=dtype, device=device, tokenizer=tok, max_length=max_length,
            share_prefix=bool(share_prefix), batch_size=_batch_size(batch_size, max_batch_size),
            prefill_chunk_size=prefill_chunk_size, truncation=truncation, progress=bool(progress))
        self.pretrained = pretrained
        self.item_scores = []  # every ItemScore of this run, for the token accounting

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

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items, slots = group_requests([req.args for req in requests])
        results = self.scorer.score(items)
        self.item_scores += results
        out: list[tuple[float, bool]] = []
        for request, (item_index, candidate_index) in zip(requests, slots):
            result = results[item_index]
            answer = (math.nan if result.skipped else result.scores[candidate_index], False)
            self.cache_hook.add_partial("loglikelihood", request.args, answer)
            out.append(answer)
        print_token_summary(self.item_scores)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise ValueError(WRONG_TASK.format(what="compute perplexities"))

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise ValueError(WRONG_TASK.format(what="generate text"))

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


def group_requests(args: Sequence[tuple[str, str]]) -> tuple[list[ScoringItem], list[tuple[int, int]]]:
    """One `ScoringItem` per distinct context, and for each request its (item, candidate) slot.

    Requests of the same item share a context string, so grouping on it lets the
    scorer see all candidates of an item together (and encode their prefix once).
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
                raise ValueError(WRONG_TASK.format(what="score a plain-text prompt"))
            index = index_of[context] = len(decoded_items)
            decoded_items.append(decoded)
            candidates.append([])
        candidates[index].append(continuation)
        slots.append((index, len(candidates[index]) - 1))
    items = [ScoringItem(d["messages"], c, d["item"] or None) for d, c in zip(decoded_items, candidates)]
    return items, slots


def print_token_summary(results) -> None:
    """One line on stderr: what the run cost and what over-long handling did (never silent)."""
    from longrm_tasks.rm.prefix_scorer import token_summary

    s = token_summary(results)
    print(f"hf-rm: {s['items']} items scored; tokens processed / unique = {s['tokens_ratio']:.3f} "
          f"({s['tokens_processed']} / {s['unique_tokens']}, {s['padding_tokens']} padding); "
          f"truncated {s['truncated']} items ({s['dropped_tokens']} tokens dropped); "
          f"skipped {s['skipped']} items", file=sys.stderr)


def _usable_device(device: str | None, torch) -> str:
    # lm-eval's CLI passes device="cuda:0" by default, also on machines without a GPU.
    if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _batch_size(batch_size: int | str | None, max_batch_size: int | None) -> int:
    # "auto" (lm-eval's memory probing) has no meaning for item-wise scoring: use the cap or 4.
    if isinstance(batch_size, str) and batch_size.startswith("auto"):
        return int(max_batch_size or 4)
    return int(batch_size or 4)
