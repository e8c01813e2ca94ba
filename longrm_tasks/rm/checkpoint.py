"""Can this checkpoint score Long-RewardBench as a scalar reward model? One-line answers before loading it.

``AutoModelForSequenceClassification`` happily loads a causal-LM checkpoint:
it bolts a freshly initialised two-label head onto the body, so the user sees
either a confusing "2 outputs" error much later or, with ``num_labels=1`` in
the config, random rewards. Reading the config's ``architectures`` first tells
the two apart and names the task groups that fit a causal LM. A tokenizer
without a chat template cannot render the reference protocol's chats at all;
transformers reports that with a long traceback, so it is checked here too.
"""
from __future__ import annotations

import os

from longrm_tasks.errors import InputError

# Architecture name endings of generative checkpoints (transformers' naming convention).
GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
JUDGE_GROUPS = "--model hf (or vllm) --tasks long_rewardbench (generative judge) or long_rewardbench_ll " \
               "(log-likelihood judge)"


def load_config(pretrained: str, *, trust_remote_code: bool = False):
    """The checkpoint's config, or one line saying why it cannot be read."""
    from transformers import AutoConfig

    path = os.path.expanduser(str(pretrained))
    if (os.path.isabs(path) or path.startswith(".")) and not os.path.isdir(path):
        raise InputError("no such model folder", path=str(pretrained), field="pretrained")
    try:
        return AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot read the model config ({first})", path=str(pretrained),
                         field="pretrained") from None


def load_tokenizer(name: str, *, trust_remote_code: bool = False):
    """The tokenizer, or one line saying why it cannot be loaded."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load the tokenizer ({first})", path=str(name), field="tokenizer") from None


def check_reward_config(config, pretrained: str) -> None:
    """Refuse a generative checkpoint and a classifier with more than one output, naming what fits."""
    archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if archs and all(a.endswith(GENERATIVE_SUFFIXES) for a in archs):
        raise InputError(f"a causal language model ({archs[0]}), not a scalar reward model: judge with it "
                         f"through {JUDGE_GROUPS}; the long_rewardbench_rm tasks need a "
                         f"*ForSequenceClassification reward model", path=str(pretrained), field="pretrained")
    labels = getattr(config, "num_labels", 1)
    if archs and any(a.endswith("ForSequenceClassification") for a in archs) and labels != 1:
        raise InputError(f"a classifier with {labels} outputs, not a scalar reward model (one output): "
                         f"the long_rewardbench_rm tasks need one reward per chat", path=str(pretrained),
                         field="pretrained")


def check_chat_template(tokenizer, name: str) -> None:
    """A reward model scores ``prompt + [assistant: answer]`` through its own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the tokenizer has no chat template, and a reward model scores chats rendered by its "
                         "own template: pass tokenizer=<a tokenizer with the reward model's template>",
                         path=str(name), field="tokenizer")
