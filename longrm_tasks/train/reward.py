"""Discriminative reward model: TRL's `RewardTrainer` (Bradley-Terry, ``-log σ(r_w - r_l)``), full or LoRA.

`RewardTrainer` drops every pair longer than ``max_length``; at LongRM's
lengths that would be most of the data. So pairs are tokenised here, the
shared prompt is cut head+tail to leave room for the longer of the two
responses (the same cut for both, so they are judged on the same context), and
TRL receives pre-tokenised ``chosen_ids``/``rejected_ids`` that always fit.

Stage II records carry V rejected judgments; ``rejected_aggregation`` says how
they meet the chosen one:

- ``"pairwise"`` (default, TRL's): one Bradley-Terry pair per rejected
  judgment, ``-log σ(r_w - r_l^j)``, V rows per record.
- ``"mean"`` (the authors' code, LCM-Lab/Long-RM ``train/trainer/simpo.py``
  with ``train/model/rm.py``'s ``BradleyTerryLoss``): one term per record,
  ``-log σ(r_w - mean_j r_l^j)``, the chosen and all V rejected responses
  judged on one cut of the context.

`RewardStageTrainer` scores each sequence at its pooled token only (the last
non-pad token, the model's own rule) instead of running the score head over
every position, and computes both losses; its metrics are TRL's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from trl import RewardConfig

from longrm_tasks.errors import InputError
from longrm_tasks.train.long_inputs import FitStats, encode, fit_prompt, response_budget_error, tokenized_splits
from longrm_tasks.train.records import preference_pairs, read_jsonl

AGGREGATIONS = ("pairwise", "mean")


@dataclass
class RewardStageConfig(RewardConfig):
    """TRL's `RewardConfig` plus how a record's V rejected responses enter the Bradley-Terry loss."""

    rejected_aggregation: str = field(default="pairwise", metadata={
        "help": "'pairwise': one Bradley-Terry pair per rejected response (TRL). 'mean': the chosen score against "
                "the mean of the record's rejected scores (the authors' code, LCM-Lab/Long-RM).",
        "choices": list(AGGREGATIONS)})
    num_rejected: int | None = field(default=None, metadata={
        "help": "Use the first V rejected responses of each record (a record with fewer is an error); "
                "unset: all of them."})

    def __post_init__(self):
        super().__post_init__()
        if self.rejected_aggregation not in AGGREGATIONS:
            raise ValueError(f"rejected_aggregation must be one of {AGGREGATIONS}, got {self.rejected_aggregation!r}")
        if self.num_rejected is not None and self.num_rejected < 1:
            raise ValueError(f"num_rejected must be >= 1, got {self.num_rejected}")



def tokenize_pair(pair, tokenizer, max_length: int | None, stats: FitStats) -> dict:
    """``{"chosen_ids", "rejected_ids"[, "margin"]}`` for one pair, fitted to ``max_length``."""
    chosen, rejected = encode(tokenizer, pair.prompt, [pair.chosen, pair.rejected], rendering="conversation")
    responses = [chosen.ids[chosen.prompt_len:], rejected.ids[rejected.prompt_len:]]
    for response, name in zip(responses, ("chosen", "rejected")):
        if not response:
            raise pair.where.error("tokenises to nothing after the prompt", name)
    stats.examples += 1
    stats.longest_input = max(stats.longest_input, len(chosen.ids), len(rejected.ids))
    prompt = chosen.ids[:chosen.prompt_len]
    if max_length is not None:
        longest = max(len(r) for r in responses)
        if max_length - longest < 1:
            field = "chosen" if len(responses[0]) == longest else "rejected"
            raise response_budget_error(pair.where, field, longest, max_length)
        prompt = fit_prompt(prompt, max_length - longest, chosen, stats)
    row = {"chosen_ids": prompt + responses[0], "rejected_ids": prompt + responses[1]}
    if pair.margin is not None:
        row["margin"] = pair.margin
    return row


def tokenize_group(pairs, tokenizer, max_length: int | None, stats: FitStats) -> dict:
    """``{"chosen_ids", "rejected_ids": [V lists][, "margin"]}`` for one record's pairs, one cut for all.

    The context is cut once, leaving room for the longest of the V+1 responses, so every response is
    judged on the same context (as the authors' packed sequences share one prompt).
    """
    first = pairs[0]
    encoded = encode(tokenizer, first.prompt, [first.chosen, *(p.rejected for p in pairs)], rendering="conversation")
    responses = [e.ids[e.prompt_len:] for e in encoded]
    fields = ["chosen"] + [f"rejected[{j}]" if len(pairs) > 1 else "rejected" for j in range(len(pairs))]
    for response, name in zip(responses, fields):
        if not response:
            raise first.where.error("tokenises to nothing after the prompt", name)
    stats.examples += 1
    stats.longest_input = max([stats.longest_input] + [len(e.ids) for e in encoded])
    prompt = encoded[0].ids[:encoded[0].prompt_len]
    if max_length is not None:
        longest = max(len(r) for r in responses)
        if max_length - longest < 1:
            name = fields[[len(r) for r in responses].index(longest)]
            raise response_budget_error(first.where, name, longest, max_length)
        prompt = fit_prompt(prompt, max_length - longest, encoded[0], stats)
    row = {"chosen_ids": prompt + responses[0], "rejected_ids": [prompt + r for r in responses[1:]]}
    if first.margin is not None:
        row["margin"] = first.margin
    return row


def tokenize_preference_file(path, tokenizer, max_length: int | None, *, aggregation: str = "pairwise",
                             num_rejected: int | None = None) -> tuple[list[dict], FitStats]:
    """Rows for `RewardStageTrainer`: one pair per rejected response (``pairwise``) or one group per record
    (``mean``); ``num_rejected`` keeps the first V rejected responses of each record."""
    rows, stats = [], FitStats()
    for where, record in read_jsonl(path):
        pairs = preference_pairs(record, where)
        if num_rejected is not None:
            if len(pairs) < num_rejected:
                raise where.error(f"has {len(pairs)} rejected response(s), num_rejected is {num_rejected}",
                                  "rejected")
            pairs = pairs[:num_rejected]
        if aggregation == "mean":
            rows.append(tokenize_group(pairs, tokenizer, max_length, stats))
        else:
            rows.extend(tokenize_pair(pair, tokenizer, max_length, stats) for pair in pairs)
    if not rows:
        raise InputError("no records", path=str(path))
    if len({"margin" in row for row in rows}) > 1:
        raise InputError("'margin' must be given for every record or for none", path=str(path), field="margin")
    return rows, stats


def collate_groups(examples: list[dict], pad_token_id: int) -> dict:
    """Chosen rows first, then every example's rejected rows in order, right-padded; ``group_sizes`` gives V
    per example. Pairwise rows are groups of one, so both aggregations share one batch layout."""
    chosen = [torch.tensor(e["chosen_ids"]) for e in examples]
    rejected_lists = [e["rejected_ids"] if e["rejected_ids"] and isinstance(e["rejected_ids"][0], list)
                      else [e["rejected_ids"]] for e in examples]
    rows = chosen + [torch.tensor(r) for group in rejected_lists for r in group]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = row
        attention_mask[i, :len(row)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask,
             "group_sizes": torch.tensor([len(g) for g in rejected_lists])}
    if "margin" in examples[0]:
        batch["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float)
    return batch


def pooled_rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(N,) scores of a ``*ForSequenceClassification`` model, its score head applied at the pooled token only.

    The pooled token is the model's own: the rightmost token that is not ``pad_token_id``.
    """
    seq_cls = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(seq_cls, seq_cls.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    pad = seq_cls.config.get_text_config().pad_token_id
    if pad is None:
        last = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
    else:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device, dtype=torch.int32)
        last = (positions * (input_ids != pad).to(torch.int32)).argmax(-1)
    pooled = hidden[torch.arange(input_ids.shape[0], device=hidden.device), last]
    return seq_cls.score(pooled).squeeze(-1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, group_sizes: torch.Tensor, aggregation: str,
                       margin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, per-term chosen - rejected)``: ``chosen`` (B,), ``rejected`` (sum of group sizes,) in group order.

    ``pairwise``: one term per rejected response (TRL's mean over pairs); ``mean``: one term per group,
    against the mean of its rejected scores (the authors' ``BradleyTerryLoss`` on ``mean(dim=0)``).
    """
    sizes = group_sizes.tolist()
    if aggregation == "mean":
        delta = chosen - torch.stack([part.mean() for part in rejected.split(sizes)])
        if margin is not None:
            delta = delta - margin
    else:
        repeat = torch.repeat_interleave(torch.arange(len(sizes), device=chosen.device), group_sizes.to(chosen.device))
        delta = chosen[repeat] - rejected
        if margin is not None:
            delta = delta - margin[repeat]
    return -F.logsigmoid(delta).mean(), delta.detach()


@functools.cache
def _reward_trainer_class():
    from trl import RewardTrainer

    from longrm_tasks.compat import trl_forward_redirection

    class RewardStageTrainer(RewardTrainer):
        """`RewardTrainer` with the score head at the pooled token only and ``rejected_aggregation``."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            unwrapped = self.accelerator.unwrap_model(model)

            def run():
                with self.accelerator.autocast():  # bypassing model.forward bypasses accelerate's autocast
                    return pooled_rewards(unwrapped, inputs["input_ids"], inputs["attention_mask"])

            rewards = trl_forward_redirection()()(model, unwrapped, run).float()
            groups = inputs["group_sizes"]
            chosen, rejected = rewards[:len(groups)], rewards[len(groups):]
            aggregation = getattr(self.args, "rejected_aggregation", "pairwise")
            loss, delta = bradley_terry_loss(chosen, rejected, groups, aggregation, inputs.get("margin"))
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean(rewards ** 2)
            if mode == "train":
                tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():  # TRL's metrics, over the loss's terms
                gathered = self.accelerator.gather(rewards.detach())
                self._metrics[mode]["min_reward"].append(gathered.min().item())
                self._metrics[mode]["mean_reward"].append(gathered.mean().item())
                self._metrics[mode]["max_reward"].append(gathered.max().item())
                accuracy = self.accelerator.gather_for_metrics((delta > 0).float().mean()).mean().item()
                self._metrics[mode]["accuracy"].append(accuracy)
                self._metrics[mode]["margin"].append(self.accelerator.gather_for_metrics(delta.mean()).mean().item())
            return (loss, {"rewards": rewards.detach()}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return RewardStageTrainer


def __getattr__(name):  # the trainer class imports TRL's trainer: build it on first use
    if name == "RewardStageTrainer":
        return _reward_trainer_class()
    raise AttributeError(name)


def reward_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Build a `RewardStageTrainer` for ``model_path`` on ``train_file``; returns (trainer, data report).

    ``args``: a `RewardStageConfig` (a plain `trl.RewardConfig` means pairwise, every rejected response).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    aggregation = getattr(args, "rejected_aggregation", "pairwise")
    tokenize = functools.partial(tokenize_preference_file, aggregation=aggregation,
                                 num_rejected=getattr(args, "num_rejected", None))
    train_dataset, eval_dataset, report = tokenized_splits(tokenize, tokenizer, args.max_length,
                                                           train_file, eval_file, what="reward")
    pad = args.pad_token or tokenizer.pad_token or tokenizer.eos_token
    pad_id = tokenizer.convert_tokens_to_ids(pad)
    trainer = _reward_trainer_class()(model=model_path, args=args, train_dataset=train_dataset,
                                      data_collator=lambda examples: collate_groups(examples, pad_id),
                                      eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                                      callbacks=callbacks)
    return trainer, report
