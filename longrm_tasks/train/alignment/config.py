"""Configuration of the Stage II alignment trainer (the TRL way: a `TrainingArguments` dataclass)."""
from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class AlignmentConfig(TrainingArguments):
    """`TrainingArguments` plus the LongRM multi-reject loss and long-context knobs.

    Defaults follow the paper (Table 5: β 2.5, γ 0.5, NLL weight 0.05,
    131,072-token sequences, lr 2e-6, bf16, 1 epoch; §5.1: V = 2) except where
    noted; activation checkpointing is on by default. The optimiser and schedule
    of the paper (Adam betas 0.9/0.95, warmup 0.03, cosine to 0.1 x lr) are set
    by the recipes (`recipes/generative_longrm.yaml`), not here.
    """

    beta: float = field(default=2.5, metadata={"help": "β: scale of the length-normalised log-prob rewards."})
    gamma: float = field(default=0.5, metadata={"help": "γ: target reward margin."})
    num_rejected: int = field(default=2, metadata={
        "help": "V: rejected judgments per prompt (paper §5.1: 2). Records with more use the first V; records "
                "with fewer are an error unless `pad_rejected` is set."})
    pad_rejected: bool = field(default=False, metadata={
        "help": "Fill records with fewer than V rejected judgments by repeating theirs (cyclically)."})
    nll_weight: float = field(default=0.05, metadata={
        "help": "Weight of the token-mean NLL of the chosen response (TRL CPO's `cpo_alpha`)."})
    max_length: int = field(default=131_072, metadata={
        "help": "Token budget per prompt + its longest response; longer prompts are cut in the middle of the "
                "context (head and tail kept), never dropped."})
    share_context: bool = field(default=True, metadata={
        "help": "Encode each prompt once for its chosen and V rejected responses (packed shared-prefix "
                "attention). False runs prompt + response once per response."})
    logit_chunk_size: int = field(default=1024, metadata={
        "help": "Response positions per LM-head chunk; the head never sees context positions."})
    disable_dropout: bool = field(default=True, metadata={"help": "Zero every dropout in the model."})
    # TrainingArguments defaults that do not suit this trainer
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 mixed precision (paper: bf16). Unset means on unless fp16 is set, as in TRL's configs."})
    learning_rate: float = field(default=2e-6, metadata={"help": "AdamW learning rate (paper: 2e-6)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimiser steps."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Keep the tokenised columns: the collator, not the model signature, decides what is used."})

    def __post_init__(self):
        # long contexts need activation checkpointing: on unless the user set either spelling of it
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        if self.bf16 is None:
            self.bf16 = not self.fp16
        super().__post_init__()
        if self.num_rejected < 1:
            raise ValueError(f"num_rejected must be >= 1, got {self.num_rejected}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.logit_chunk_size < 1:
            raise ValueError(f"logit_chunk_size must be >= 1, got {self.logit_chunk_size}")
