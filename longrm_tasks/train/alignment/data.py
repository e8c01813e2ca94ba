"""Read and tokenise Stage II alignment data: one prompt, one chosen and V rejected responses.

Records are read and normalised by `records.py`, the one normaliser of every
stage: the LongRM authors' format (``messages`` = system + user turns that form
the judge prompt, ``chosen`` str, ``rejected`` list of str) and TRL's
preference formats (``prompt``/``chosen``/``rejected``, plain text or
conversational, ``rejected`` one response or a list; the implicit-prompt form
goes through ``trl.data_utils.extract_prompt``), from a JSON Lines file, a JSON
list or memory.

Each response is tokenised the way Stage I, the reward stage and the
evaluation render a judgment (`long_inputs.encode`): a conversational prompt
goes through the tokenizer's chat template with the generation prompt and
thinking off (``enable_thinking=False``, as the evaluation prompt), and a
response is the assistant turn as the template renders it after that prompt
(for Qwen3: the answer after the empty ``<think></think>`` block, then
``<|im_end|>``). Plain-text prompts are text + response + EOS, as TRL does.

Over-long prompts are cut in the context like every training stage's
(`long_inputs.fit_prompt`): the tagged key passage and the tail from the
``</context>`` marker on (the question and the response to judge) are kept
whole when they fit, head and tail of the context around them; every cut is
counted and logged; no record is dropped.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from datasets import Dataset

from longrm_tasks.errors import InputError
from longrm_tasks.train.long_inputs import FitStats, encode, encode_prompt, fit_prompt
from longrm_tasks.train.records import Preference, preference_record, read_records

logger = logging.getLogger(__name__)


@dataclass
class AlignmentDataStats(FitStats):
    """How the prompts were fitted (one example per record) and what happened to the rejected lists."""

    extra_rejected_ignored: int = 0  # records with more than V rejected (the first V are used)
    padded_rejected: int = 0    # records filled up to V by repetition (pad_rejected=True)

    @property
    def records(self) -> int:
        return self.examples

    def summary(self) -> str:
        return (f"alignment records: {super().summary()}; {self.extra_rejected_ignored} with more than V "
                f"rejected (first V used), {self.padded_rejected} padded to V by repetition")


def _tokenize_record(tokenizer, pref: Preference, *, max_length: int, stats: AlignmentDataStats) -> dict:
    encoded = encode(tokenizer, pref.prompt, [pref.chosen, *pref.rejected])
    # Every response continues the same prompt tokens (shared-context training needs one prompt);
    # where a response's first token merged with the prompt's last, the shorter prefix is the prompt.
    shared = min(e.prompt_len for e in encoded)
    prompt_ids = encoded[0].ids[:shared]
    responses = [e.ids[shared:] for e in encoded]
    fields = ["chosen"] + [f"rejected[{j}]" for j in range(len(pref.rejected))]
    for response, field in zip(responses, fields):
        if not response:
            raise pref.where.error("tokenises to nothing after the prompt", field)
    longest = max(len(r) for r in responses)
    budget = max_length - longest
    if budget < 1:
        raise pref.where.error(f"a response has {longest} tokens, which leaves no room for the prompt within "
                               f"max_length={max_length}", "chosen/rejected")
    prompt = encode_prompt(tokenizer, pref.prompt)  # key passage span and protected tail, in prompt tokens
    kept = fit_prompt(prompt_ids, budget, prompt, stats)
    stats.examples += 1
    stats.longest_input = max(stats.longest_input, shared + longest)  # before fitting, as in SFT
    return {"prompt_input_ids": kept, "chosen_input_ids": responses[0], "rejected_input_ids": responses[1:],
            "prompt_length_original": shared}


def _exactly_v(pref: Preference, num_rejected: int, pad_rejected: bool, stats: AlignmentDataStats) -> Preference:
    rejected = pref.rejected
    if len(rejected) > num_rejected:
        stats.extra_rejected_ignored += 1
        rejected = rejected[:num_rejected]
    elif len(rejected) < num_rejected:
        if not pad_rejected:
            raise pref.where.error(f"has {len(rejected)} responses but num_rejected (V) is {num_rejected}; "
                                   "lower V or allow padding by repetition (pad_rejected)", "rejected")
        stats.padded_rejected += 1
        rejected = [rejected[j % len(rejected)] for j in range(num_rejected)]
    return Preference(pref.prompt, pref.chosen, rejected, pref.where, pref.margin)


def load_alignment_dataset(path_or_records, tokenizer, *, max_length: int = 131_072, num_rejected: int = 2,
                           pad_rejected: bool = False, return_stats: bool = False):
    """Tokenised alignment data as a ``datasets.Dataset``.

    Columns: ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``
    (exactly ``num_rejected`` lists), ``prompt_length_original``. Records with
    more than ``num_rejected`` rejected responses use the first ones; records
    with fewer raise ``InputError`` unless ``pad_rejected`` repeats theirs
    cyclically. With ``return_stats`` the result is ``(dataset, AlignmentDataStats)``.
    """
    if num_rejected < 1:
        raise ValueError(f"num_rejected must be >= 1, got {num_rejected}")
    stats = AlignmentDataStats()
    rows = []
    for where, record in read_records(path_or_records):
        pref = _exactly_v(preference_record(record, where), num_rejected, pad_rejected, stats)
        rows.append(_tokenize_record(tokenizer, pref, max_length=max_length, stats=stats))
    if not rows:
        raise InputError("no alignment records found",
                         path=os.fspath(path_or_records) if isinstance(path_or_records, (str, os.PathLike))
                         else None)
    (logger.warning if stats.truncated else logger.info)(stats.summary())
    dataset = Dataset.from_list(rows)
    return (dataset, stats) if return_stats else dataset


def alignment_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Stage II: the multi-reject alignment trainer on its tokenised data; returns (trainer, data report)."""
    from transformers import AutoTokenizer

    from longrm_tasks.train.alignment.trainer import AlignmentTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def load(path):
        return load_alignment_dataset(str(path), tokenizer, max_length=args.max_length,
                                      num_rejected=args.num_rejected, pad_rejected=args.pad_rejected,
                                      return_stats=True)

    train, stats = load(train_file)
    report = {"train": stats.as_dict()}
    eval_dataset = None
    if eval_file is not None:
        eval_dataset, eval_stats = load(eval_file)
        report["eval"] = eval_stats.as_dict()
    trainer = AlignmentTrainer(model_path, args=args, train_dataset=train, eval_dataset=eval_dataset,
                               processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    return trainer, report
