"""Stage II alignment trainer: the LongRM multi-reject loss on a `transformers.Trainer`.

What TRL's ``CPOTrainer(loss_type="simpo")`` does for one rejected response,
with V rejected responses per prompt and the two long-context savings of
``shared_context``: the prompt is encoded once for all V+1 responses and the LM
head only ever sees response positions. Logging follows TRL (rewards/chosen,
rewards/rejected, rewards/margins, rewards/accuracies, logps/*, nll_loss);
checkpointing, resuming, gradient checkpointing, bf16 and PEFT come from the
Trainer and peft.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from transformers import AutoModelForCausalLM, Trainer
from longrm_tasks.compat import trl_forward_redirection


from longrm_tasks.train.alignment.config import AlignmentConfig
from longrm_tasks.train.alignment.losses import multi_reject_loss
from longrm_tasks.train.shared_context import (enable_shared_prefix_attention, shared_context_logps,
                                               shared_context_support, unshared_logps)

logger = logging.getLogger(__name__)

COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")


def unshared_notice(stage_name: str, reason: str) -> str:
    return f"stage {stage_name!r}: shared context off ({reason}); it runs unshared, one forward per response"


def shared_context_preflight(stage, base_model_path: str) -> str | None:
    """The alignment stage's check before any stage trains (`runner.preflight`, stage table ``preflight``).

    Where the model cannot share the context, turn ``share_context`` off in ``stage.args`` and say so in
    one line (returned and logged as a warning). Every stage of a recipe trains the base model's
    architecture, so its config decides.
    """
    if not stage.args.get("share_context", True):
        return None
    from transformers import AutoConfig

    reason = shared_context_support(AutoConfig.from_pretrained(base_model_path))
    if reason is None:
        return None
    stage.args["share_context"] = False
    line = unshared_notice(stage.name, reason)
    logger.warning(line)
    return line


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero every ``nn.Dropout`` (TRL's ``disable_dropout_in_model``, owned: four lines are cheaper than a
    private import to track). Attention dropout that a model reads from its config is untouched, as in TRL."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def collate_alignment(features: list[dict[str, Any]]) -> dict[str, list]:
    """Keep token lists as lists: each item is packed on its own, so there is nothing to pad."""
    return {column: [f[column] for f in features] for column in COLUMNS}


class AlignmentTrainer(Trainer):
    """``Trainer`` for Stage II. ``model``: a causal LM or its path; ``train_dataset``/``eval_dataset``:
    from ``load_alignment_dataset`` (same V as ``args.num_rejected``); ``peft_config``: optional, e.g. LoRA."""

    _tag_names = ["longrm", "alignment", "simpo"]

    def __init__(self, model, args: AlignmentConfig, train_dataset=None, eval_dataset=None,
                 processing_class=None, peft_config=None, data_collator=None, callbacks=None,
                 optimizers=(None, None)):
        if not isinstance(args, AlignmentConfig):
            raise TypeError(f"args must be an AlignmentConfig, got {type(args).__name__}")
        if isinstance(model, str):
            model = AutoModelForCausalLM.from_pretrained(model)
        if peft_config is not None:
            from peft import get_peft_model

            if args.activation_checkpointing:
                # frozen embeddings would give checkpointed layers inputs without grad
                model.enable_input_require_grads()
            model = get_peft_model(model, peft_config)
        if args.disable_dropout:
            disable_dropout(model)
        reason = shared_context_support(model.config) if args.share_context else None
        if reason:  # the runner says so before Stage I; a direct user of the trainer hears it here
            logger.warning(unshared_notice("alignment", reason))
            args.share_context = False
        if args.share_context:
            enable_shared_prefix_attention(model)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            missing = [c for c in COLUMNS if dataset is not None and c not in dataset.column_names]
            if missing:
                raise ValueError(f"{name} lacks columns {missing}; build it with load_alignment_dataset")
        # the collator needs the token columns, which the model's forward signature does not name
        args.remove_unused_columns = False
        self._stored_metrics = defaultdict(lambda: defaultdict(list))
        super().__init__(model=model, args=args, data_collator=data_collator or collate_alignment,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, callbacks=callbacks, optimizers=optimizers)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    def _item_logps(self, model, prompt, chosen, rejected) -> tuple[torch.Tensor, torch.Tensor]:
        fn = shared_context_logps if self.args.share_context else unshared_logps
        unwrapped = self.accelerator.unwrap_model(model)
        responses = [chosen, *rejected]

        def run():
            # accelerate applies bf16/fp16 autocast by wrapping model.forward, which we bypass: apply it here
            with self.accelerator.autocast():
                return fn(unwrapped, prompt, responses, logit_chunk_size=self.args.logit_chunk_size)

        # DDP, FSDP and ZeRO-3 hooks fire in the wrapper's forward (with FSDP2 the model is its own
        # wrapper: fully_shard hooks the root module), and the backbone is called below it: route our
        # computation through that forward so parameters are gathered and gradients reduced.
        return trl_forward_redirection()()(model, unwrapped, run)

    def _batch_loss(self, model, inputs, train_eval: str):
        v = self.args.num_rejected
        chosen_logps, chosen_lens, rejected_logps, rejected_lens = [], [], [], []
        for prompt, chosen, rejected in zip(*(inputs[c] for c in COLUMNS)):
            if len(rejected) != v:
                raise ValueError(f"an item has {len(rejected)} rejected responses but num_rejected is {v}; "
                                 "load the data with the same num_rejected")
            logps, lengths = self._item_logps(model, prompt, chosen, rejected)
            chosen_logps.append(logps[0])
            chosen_lens.append(lengths[0])
            rejected_logps.append(logps[1:])
            rejected_lens.append(lengths[1:])
        out = multi_reject_loss(torch.stack(chosen_logps), torch.stack(chosen_lens),
                                torch.stack(rejected_logps), torch.stack(rejected_lens),
                                beta=self.args.beta, gamma=self.args.gamma, nll_weight=self.args.nll_weight)
        self._store(out, train_eval, torch.stack(chosen_logps).detach() / torch.stack(chosen_lens),
                    torch.stack(rejected_logps).detach() / torch.stack(rejected_lens))
        return out.loss

    def _store(self, out, train_eval: str, chosen_mean_logps, rejected_mean_logps) -> None:
        gather = self.accelerator.gather_for_metrics
        prefix = "eval_" if train_eval == "eval" else ""
        rejected = out.rejected_rewards
        metrics = {
            "rewards/chosen": out.chosen_rewards,
            "rewards/rejected": rejected.mean(dim=1),
            # at V = 1 these are TRL's; with V > 1 a win means beating every rejected response
            "rewards/accuracies": (out.chosen_rewards[:, None] > rejected).all(dim=1).float(),
            "rewards/margins": out.chosen_rewards - rejected.mean(dim=1),
            "logps/chosen": chosen_mean_logps,
            "logps/rejected": rejected_mean_logps.mean(dim=1),
            "preference_loss": out.preference_loss.detach(),
            "nll_loss": out.nll_loss[None],
        }
        for key, value in metrics.items():
            self._stored_metrics[train_eval][prefix + key].append(gather(value).float().mean().item())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self._batch_loss(model, inputs, "train")
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self._batch_loss(model, inputs, "eval")
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged rewards/logps metrics stored since the last log (as TRL's trainers do)."""
        train_eval = "train" if "loss" in logs else "eval"
        for key, values in self._stored_metrics.pop(train_eval, {}).items():
            logs[key] = sum(values) / len(values)
        super().log(logs, start_time)
