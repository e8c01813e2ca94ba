"""Stage I, SFT cold start: TRL's `SFTTrainer` with the loss on the assistant turn only.

TRL 1.16 offers two ways to mask the prompt: ``assistant_only_loss`` (needs a
chat template with ``{% generation %}`` markers, or one TRL knows how to
patch) and ``completion_only_loss`` on prompt/completion data. The second
works with any chat template, so every accepted record becomes a prompt and a
completion, is tokenised here (`long_inputs.encode`), fitted to ``max_length``
by cutting the context, and handed to `SFTTrainer` pre-tokenised
(``input_ids`` + ``completion_mask``); TRL then builds the labels and its own
keep-start truncation never fires.
"""
from __future__ import annotations


from longrm_tasks.errors import InputError
from longrm_tasks.train.long_inputs import FitStats, encode, fit_prompt, response_budget_error, tokenized_splits
from longrm_tasks.train.records import read_jsonl, sft_example



def tokenize_sft_file(path, tokenizer, max_length: int | None) -> tuple[list[dict], FitStats]:
    """Rows ``{"input_ids", "completion_mask"}`` for every record of ``path``; none is dropped."""
    rows, stats = [], FitStats()
    for where, record in read_jsonl(path):
        example = sft_example(record, where)
        (enc,) = encode(tokenizer, example.prompt, [example.completion])
        prompt, completion = enc.ids[:enc.prompt_len], enc.ids[enc.prompt_len:]
        if not completion:
            raise where.error("tokenises to nothing after the prompt", "completion")
        stats.examples += 1
        stats.longest_input = max(stats.longest_input, len(enc.ids))
        if max_length is not None:
            budget = max_length - len(completion)
            if budget < 1:
                raise response_budget_error(where, "completion", len(completion), max_length)
            prompt = fit_prompt(prompt, budget, enc, stats)
        rows.append({"input_ids": prompt + completion,
                     "completion_mask": [0] * len(prompt) + [1] * len(completion)})
    if not rows:
        raise InputError("no records", path=str(path))
    return rows, stats


def sft_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Build an `SFTTrainer` for ``model_path`` on ``train_file``; returns (trainer, data report)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if args.completion_only_loss is None:
        args.completion_only_loss = True  # loss on the assistant turn only
    train_dataset, eval_dataset, report = tokenized_splits(tokenize_sft_file, tokenizer, args.max_length, train_file,
                                                           eval_file, what="SFT")
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                         callbacks=callbacks)
    return trainer, report
