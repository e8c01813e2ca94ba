"""Stage I, SFT cold start: TRL's `SFTTrainer` with the loss on the assistant turn only.

TRL 1.16 offers two ways to mask the prompt: ``assistant_only_loss`` (needs a
chat template with ``{% generation %}`` markers, or one TRL knows how to
patch) and ``completion_only_loss`` on prompt/completion data. The second
works with any chat template, so every accepted record becomes a prompt and a
completion, is tokenised here (`long_inputs.encode`), fitted to ``max_length``
by cutting the context, and handed to `SFTTrainer` pre-tokenised
(``input_ids`` + ``completion_mask``); TRL then builds the labels and its own
keep-start truncation never fires.

The loss reads only the judgment, so `ResponseOnlySFTTrainer` applies the LM
head only to completion positions (`response_head.lm_head_logps`, a block of
rows at a time): TRL's own fused head scores every position on devices
without Triton and older TRL 1.x builds the full ``tokens x vocabulary``
logits (2.1 GB per 2K-token sequence at Gemma 3's 262K vocabulary). The loss
is TRL's: the summed NLL of the completion tokens over their count (or over
``num_items_in_batch`` under gradient accumulation).
"""
from __future__ import annotations

import functools

import torch

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


@functools.cache
def _sft_trainer_class():
    from trl import SFTTrainer

    from longrm_tasks.compat import trl_forward_redirection

    from longrm_tasks.train.response_head import causal_lm, lm_head_logps

    class ResponseOnlySFTTrainer(SFTTrainer):
        """`SFTTrainer` whose loss runs the LM head on completion positions only (see module doc).

        Asked for outputs (``compute_metrics`` needs logits) it defers to TRL's own loss.
        """

        logit_block_rows = 1024

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or "labels" not in inputs or self.compute_loss_func is not None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            unwrapped = self.accelerator.unwrap_model(model)
            labels = inputs["labels"][:, 1:]
            trained = labels != -100
            backbone_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "completion_mask", "use_cache")}

            def run():
                # accelerate's autocast wraps model.forward, which this bypasses: apply it here
                with self.accelerator.autocast():
                    hidden = causal_lm(unwrapped).get_decoder()(**backbone_inputs, use_cache=False).last_hidden_state
                    return lm_head_logps(unwrapped, hidden[:, :-1][trained], labels[trained], self.logit_block_rows)

            # DDP/FSDP/ZeRO-3 hooks live in the wrapper's forward: route the computation through it
            logps = trl_forward_redirection()()(model, unwrapped, run)
            count = trained.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -logps.sum() / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            if mode == "train":
                tokens = inputs["attention_mask"].sum() if "attention_mask" in inputs else \
                    torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
                self._total_train_tokens += self.accelerator.gather_for_metrics(tokens).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return ResponseOnlySFTTrainer


def __getattr__(name):  # the trainer class imports TRL: build it on first use
    if name == "ResponseOnlySFTTrainer":
        return _sft_trainer_class()
    raise AttributeError(name)


def sft_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Build a `ResponseOnlySFTTrainer` for ``model_path`` on ``train_file``; returns (trainer, data report)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if args.completion_only_loss is None:
        args.completion_only_loss = True  # loss on the assistant turn only
    train_dataset, eval_dataset, report = tokenized_splits(tokenize_sft_file, tokenizer, args.max_length, train_file,
                                                           eval_file, what="SFT")
    trainer = _sft_trainer_class()(model=model_path, args=args, train_dataset=train_dataset,
                                   eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                                   callbacks=callbacks)
    return trainer, report
