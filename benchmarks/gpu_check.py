"""GPU check: long-context reward scoring and one alignment step on real model shapes, one JSON line.

Made to run in under 8 minutes on one H100/H200 (80-141 GB), random weights, bf16:

- scoring: sequence-classification reward models of the Llama-3.2-1B and
  Llama-3.1-8B shapes (depth, widths, GQA layout, 128,256-token vocabulary)
  score Best-of-4 items (one random context of 16K / 64K / 128K tokens, four
  ~512-token answers) with `RewardScorer` twice: shared prefix (the context
  once, the four remainders packed behind its cache) and the reference
  behaviour (one full forward per candidate). Per shape and length: seconds,
  tokens/s (all candidates' tokens over the wall time, what a user waits for),
  peak GPU memory above the weights, and the largest |score difference|
  between the two modes (bf16: kernels and accumulation order differ).
- alignment: one step (SimPO loss + backward, activation checkpointing, bf16
  weights) at 32K and 64K tokens (prompt + chosen + rejected) on the 1B layout
  with a 151,936-token vocabulary: ours (`AlignmentTrainer`, shared context,
  response-only log-probs) against TRL's ``CPOTrainer(loss_type="simpo")`` on
  the same token ids, where TRL fits (an out-of-memory run is reported as such).

Everything runs in this one process; each configuration resets the CUDA peak
counter, and one that runs out of memory is recorded and cleaned up. A time
budget (``--budget-s``) skips what would not fit, and says so. ``--smoke`` runs
the same code on the CPU with tiny shapes in seconds (the test suite does).

    python benchmarks/gpu_check.py              # on a GPU machine
    python benchmarks/gpu_check.py --smoke      # anywhere
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

# Published layouts (random weights here). max_position_embeddings is raised past 128K + answers
# with plain RoPE: with random weights the RoPE scaling variant changes nothing being measured.
SHAPES = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, vocab_size=128_256),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=128_256),
}
SMOKE_SHAPES = {"tiny-a": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=16, vocab_size=1000)}
GPU_PLAN = {"scoring_contexts": [16_384, 65_536, 131_072], "answer": 512, "candidates": 4,
            "alignment_contexts": [32_768, 65_536], "alignment_vocab": 151_936, "response": 512,
            "alignment_shape": "llama-1b"}
SMOKE_PLAN = {"scoring_contexts": [256, 512], "answer": 32, "candidates": 4, "alignment_contexts": [256],
              "alignment_vocab": 1500, "response": 32, "alignment_shape": "tiny-a"}


def label(tokens: int) -> str:
    """16384 -> "16k"; a smoke run's short contexts keep their exact size."""
    return f"{tokens // 1024}k" if tokens % 1024 == 0 and tokens >= 1024 else str(tokens)


def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


class Clock:
    """Wall time and peak memory of one measured block, on CUDA or (smoke) the CPU."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        if self.cuda:
            self.peak_gb = self.torch.cuda.max_memory_allocated() / 2**30
            self.extra_gb = (self.torch.cuda.max_memory_allocated() - self.base) / 2**30
        else:  # process-wide high-water mark: an upper bound, enough for a smoke run
            self.peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            self.extra_gb = None
        return False


def free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def llama_config(shape: dict, tok, max_positions: int):
    import transformers

    return transformers.LlamaConfig(**shape, max_position_embeddings=max_positions, tie_word_embeddings=False,
                                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                    bos_token_id=None, num_labels=1)


def random_ids(n: int, vocab: int, gen) -> list[int]:
    import torch

    # ids >= 600 never collide with the tiny tokenizer's pad/EOS/special ids
    return torch.randint(600, vocab, (n,), generator=gen).tolist()


# -------------------------------------------------------------------------------------------- scoring

def scoring(shape_name: str, shape: dict, plan: dict, device, dtype, deadline: float) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from longrm_tasks.rm.formatting import FormattedItem
    from longrm_tasks.rm.prefix_scorer import RewardScorer
    from longrm_tasks.testing import build_tokenizer

    tok = build_tokenizer()
    config = llama_config(shape, tok, max(plan["scoring_contexts"]) + 2 * plan["answer"] + 64)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype).eval()
    out = {"params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
           "weights_gb": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30, 2)}
    shared = RewardScorer(model, tok, share_prefix=True, batch_size=plan["candidates"])
    unshared = RewardScorer(model, tok, share_prefix=False, batch_size=1)  # the reference: one forward each
    gen = torch.Generator().manual_seed(1)

    def item(context: int) -> FormattedItem:
        ctx = random_ids(context, shape["vocab_size"], gen)
        answers = [random_ids(plan["answer"] + 8 * k, shape["vocab_size"], gen) for k in range(plan["candidates"])]
        seqs = [ctx + a for a in answers]
        return FormattedItem(seqs, [len(s) for s in seqs])

    warm = item(min(1024, plan["scoring_contexts"][0]))  # kernels, cuBLAS handles, allocator
    shared.score_formatted(warm), unshared.score_formatted(warm)
    for context in plan["scoring_contexts"]:
        key = label(context)
        if time.monotonic() > deadline:
            out[key] = {"skipped": "time budget"}
            continue
        it = item(context)
        tokens = sum(len(s) for s in it.input_ids)
        row = {"context_tokens": context, "candidate_tokens_total": tokens}
        results = {}
        for mode, scorer in (("shared", shared), ("unshared", unshared)):
            try:
                with Clock(device) as clock:
                    results[mode] = scorer.score_formatted(it)
            except Exception as err:  # noqa: BLE001 - an OOM is a result here, anything else is re-raised
                if not is_oom(err):
                    raise
                row[f"{mode}_oom"] = True
                free(device)
                continue
            row |= {f"{mode}_s": round(clock.seconds, 3), f"{mode}_tokens_per_s": round(tokens / clock.seconds),
                    f"{mode}_peak_gb": round(clock.peak_gb, 2),
                    f"{mode}_forward_passes": results[mode].forward_passes}
            if clock.extra_gb is not None:
                row[f"{mode}_extra_gb"] = round(clock.extra_gb, 2)
            free(device)
        if len(results) == 2:
            a, b = results["shared"].scores, results["unshared"].scores
            row["max_abs_score_diff"] = max(abs(x - y) for x, y in zip(a, b))
            row["score_spread"] = max(b) - min(b)  # the scale the difference compares with
            row["speedup"] = round(row["unshared_s"] / row["shared_s"], 2)
        out[key] = row
        log(f"scoring {shape_name} {key}: {row}")
    del shared, unshared, model
    free(device)
    return out


# ------------------------------------------------------------------------------------------ alignment

def alignment(plan: dict, shapes: dict, device, dtype, deadline: float) -> dict:
    import torch
    import transformers

    from longrm_tasks.testing import build_tokenizer

    tok = build_tokenizer()
    shape = dict(shapes[plan["alignment_shape"]], vocab_size=plan["alignment_vocab"])
    out = {"shape": plan["alignment_shape"], "vocab": plan["alignment_vocab"], "response_tokens": plan["response"],
           "step": "SimPO loss (no NLL) + backward; activation checkpointing; V=1"}
    cpu = device.type == "cpu"
    tmp = tempfile.mkdtemp(prefix="gpu-check-")
    common = dict(output_dir=tmp, report_to=[], bf16=not cpu, use_cpu=cpu, disable_tqdm=True)
    gen = torch.Generator().manual_seed(2)
    for context in plan["alignment_contexts"]:
        prompt = random_ids(context - 2 * plan["response"], shape["vocab_size"], gen)
        responses = [random_ids(plan["response"], shape["vocab_size"], gen) for _ in range(2)]
        losses = {}
        for method in ("ours", "trl"):  # TRL last: it is the one that may run out of memory
            key = f"{method}/{label(context)}"
            if time.monotonic() > deadline:
                out[key] = {"skipped": "time budget"}
                continue
            config = transformers.LlamaConfig(**shape, max_position_embeddings=context + 64, tie_word_embeddings=False,
                                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                              bos_token_id=None)
            torch.manual_seed(0)
            with torch.device(device):
                model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.train()
            model.activation_checkpointing_enable()
            trainer = step = None
            try:
                trainer, step = _ours(model, tok, prompt, responses, common, context) if method == "ours" else \
                    _trl(model, tok, prompt, responses, common, context, device)
                model.zero_grad(set_to_none=True)
                with Clock(device) as clock:
                    loss = step()
                losses[method] = loss
                out[key] = {"step_s": round(clock.seconds, 3), "peak_gb": round(clock.peak_gb, 2),
                            "loss": round(loss, 6)}
                if clock.extra_gb is not None:
                    out[key]["extra_gb"] = round(clock.extra_gb, 2)
            except Exception as err:  # noqa: BLE001 - an OOM is a result here, anything else is re-raised
                if not is_oom(err):
                    raise
                out[key] = {"oom": True}
            finally:
                del trainer, step, model
                free(device)
            log(f"alignment {key}: {out[key]}")
        if len(losses) == 2:
            ours, trl = out[f"ours/{label(context)}"], out[f"trl/{label(context)}"]
            out[f"ratios/{label(context)}"] = {"speedup": round(trl["step_s"] / ours["step_s"], 2),
                                                  "peak_fraction": round(ours["peak_gb"] / trl["peak_gb"], 3),
                                                  "loss_abs_diff": abs(losses["ours"] - losses["trl"])}
    return out


def _ours(model, tok, prompt, responses, common, context):
    from datasets import Dataset

    from longrm_tasks.train.alignment.config import AlignmentConfig
    from longrm_tasks.train.alignment.trainer import AlignmentTrainer, collate_alignment

    item = {"prompt_input_ids": prompt, "chosen_input_ids": responses[0], "rejected_input_ids": responses[1:]}
    trainer = AlignmentTrainer(model, args=AlignmentConfig(num_rejected=1, nll_weight=0.0, max_length=context,
                                                           share_context=True, activation_checkpointing=True,
                                                           **common),
                               train_dataset=Dataset.from_list([item]), processing_class=tok)
    batch = collate_alignment([item])

    def step():
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        return loss.item()

    return trainer, step


def _trl(model, tok, prompt, responses, common, context, device):
    import torch
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    trainer = CPOTrainer(model=model, args=CPOConfig(loss_type="simpo", beta=2.5, simpo_gamma=0.5, cpo_alpha=0.0,
                                                     max_length=context, activation_checkpointing=True, **common),
                         processing_class=tok,
                         train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]))
    batch = {}
    for name, response in (("chosen", responses[0]), ("rejected", responses[1])):
        ids = torch.tensor([prompt + response], device=device)
        labels = ids.clone()
        labels[:, :len(prompt)] = -100
        batch |= {f"{name}_input_ids": ids, f"{name}_attention_mask": torch.ones_like(ids),
                  f"{name}_labels": labels}

    def step():
        loss, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
        loss.backward()
        return loss.item()

    return trainer, step


# ----------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (seconds); checks the code")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="stop starting new configurations after this many seconds (default 420)")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=sorted(SHAPES))
    parser.add_argument("--skip-alignment", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    started = time.monotonic()
    deadline = started + args.budget_s
    if args.smoke:
        device, dtype, plan, shapes = torch.device("cpu"), torch.float32, SMOKE_PLAN, SMOKE_SHAPES
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device; run with --smoke for the CPU check", file=sys.stderr)
            return 2
        device, dtype, plan, shapes = torch.device("cuda"), torch.bfloat16, GPU_PLAN, \
            {name: SHAPES[name] for name in args.shapes}
    report = {"benchmark": "gpu_check", "smoke": args.smoke, "device": _device_name(device),
              "torch": torch.__version__, "dtype": str(dtype).replace("torch.", ""),
              "candidates": plan["candidates"], "answer_tokens": plan["answer"],
              "tokens_per_s_means": "all candidates' tokens / wall seconds of scoring the item",
              "scoring": {}}
    for name, shape in shapes.items():
        if time.monotonic() > deadline:
            report["scoring"][name] = {"skipped": "time budget"}
            continue
        report["scoring"][name] = scoring(name, shape, plan, device, dtype, deadline)
    if not args.skip_alignment:
        report["alignment"] = alignment(plan, {**SHAPES, **SMOKE_SHAPES}, device, dtype, deadline)
    report["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
