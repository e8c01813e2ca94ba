"""Discriminative reward model: TRL's `RewardTrainer` (Bradley-Terry, ``-log σ(r_w - r_l)``), full or LoRA.

`RewardTrainer` drops every pair longer than ``max_length``; at LongRM's
lengths that would be most of the data. So pairs are tokenised here, the
shared prompt is cut head+tail to leave room for the longer of the two
responses (the same cut for both, so they are judged on the same context), and
TRL receives pre-tokenised ``chosen_ids``/``rejected_ids`` that always fit.
Stage II records with V rejected judgments give V pairs.
"""
from __future__ import annotations


from longrm_tasks.errors import InputError
from longrm_tasks.train.long_inputs import FitStats, encode, fit_prompt, response_budget_error, tokenized_splits
from longrm_tasks.train.records import preference_pairs, read_jsonl



def tokenize_pair(pair, tokenizer, max_length: int | None, stats: FitStats) -> dict:
    """``{"chosen_ids", "rejected_ids"[, "margin"]}`` for one pair, fitted to ``max_length``."""
    chosen, rejected = encode(tokenizer, pair.prompt, [pair.chosen, pair.rejected])
    responses = [chosen.ids[chosen.prompt_len:], rejected.ids[rejected.prompt_len:]]
    for response, field in zip(responses, ("chosen", "rejected")):
        if not response:
            raise pair.where.error("tokenises to nothing after the prompt", field)
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


def tokenize_preference_file(path, tokenizer, max_length: int | None) -> tuple[list[dict], FitStats]:
    rows, stats = [], FitStats()
    for where, record in read_jsonl(path):
        rows.extend(tokenize_pair(pair, tokenizer, max_length, stats) for pair in preference_pairs(record, where))
    if not rows:
        raise InputError("no records", path=str(path))
    if len({"margin" in row for row in rows}) > 1:
        raise InputError("'margin' must be given for every record or for none", path=str(path), field="margin")
    return rows, stats


def reward_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Build a `RewardTrainer` for ``model_path`` on ``train_file``; returns (trainer, data report)."""
    from transformers import AutoTokenizer
    from trl import RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train_dataset, eval_dataset, report = tokenized_splits(tokenize_preference_file, tokenizer, args.max_length,
                                                           train_file, eval_file, what="reward")
    trainer = RewardTrainer(model=model_path, args=args, train_dataset=train_dataset,
                            eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                            callbacks=callbacks)
    return trainer, report
