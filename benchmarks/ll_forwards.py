"""Forward passes per item and wall time of ``long_rewardbench_ll``: version-1 vs version-2 requests, one run.

Both designs run through the real lm-eval ``hf`` backend (`lm_eval.simple_evaluate`
with an `HFLM` around a tiny random-weight model on CPU), on the same items and
the same model, back to back:

- ``v1``: continuations ``[[A]]`` / ``[[B]]`` (pairs) and ``[[X>`` (Best-of-N)
  after the judge prompt; they differ before their last token, so lm-eval runs
  one full prefill per choice;
- ``v2`` (`longrm_tasks.requests.loglikelihood`): the prompt ends with ``[[`` and
  each choice is one letter token, so lm-eval's one-token-continuation cache
  (``Collator(group_by="contexts")``) scores every choice from one forward.

Forwards and prefilled tokens are counted by a pre-hook on the model; the
model's own time by a pre/post hook pair. ``--context-words N`` swaps the
bundled sample (contexts of ~300 words) for synthetic items with N-word
contexts (the real per-config mix of pairs and Best-of-2/3/4) so the prefill
dominates as it does at 128K.

    python benchmarks/ll_forwards.py [--context-words 3000 --scale 0.02]

Prints ONE JSON line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_data(folder: Path, context_words: int, scale: float) -> str:
    from longrm_tasks.atomic import write_jsonl
    from longrm_tasks.data.synthetic import BUCKET_TOKENS, generate_benchmark

    words = {bucket: context_words for bucket in BUCKET_TOKENS}
    folder.mkdir(parents=True, exist_ok=True)
    for config, records in generate_benchmark(scale, seed=11, context_words=words).items():
        write_jsonl(folder / f"{config}.jsonl", records)
    return str(folder)


class Meter:
    """Forward calls, sequences and tokens prefilled, and seconds spent inside the model."""

    def __init__(self, model):
        self.reset()
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after)

    def reset(self):
        self.calls = self.rows = self.tokens = 0
        self.seconds = 0.0
        self._t = None

    def _before(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.rows += int(ids.shape[0])
        self.tokens += int(ids.numel())
        self._t = time.perf_counter()

    def _after(self, module, args, output):
        self.seconds += time.perf_counter() - self._t


def run_design(lm, meter, metadata: dict, design: str) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from longrm_tasks.requests.loglikelihood import legacy_design

    manager = TaskManager(include_path=str(ROOT / "task_yamls"), include_defaults=False, metadata=metadata)
    meter.reset()
    start = time.perf_counter()
    with legacy_design() if design == "v1" else contextlib.nullcontext():
        res = lm_eval.simple_evaluate(model=lm, tasks=["long_rewardbench_ll"], task_manager=manager,
                                      log_samples=True)
    wall = time.perf_counter() - start
    samples = [s for task_samples in res["samples"].values() for s in task_samples]
    items = len(samples)
    choices = sum(len(s["doc"]["choices"]) for s in samples)
    return {"items": items, "choices": choices, "forwards": meter.rows, "forwards_per_item": meter.rows / items,
            "prefill_tokens": meter.tokens, "model_s": round(meter.seconds, 3), "wall_s": round(wall, 3),
            "AVG": res["results"]["long_rewardbench_ll"].get("AVG,none")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context-words", type=int, default=0,
                        help="synthetic items with contexts of this many words (0: the bundled sample)")
    parser.add_argument("--scale", type=float, default=0.02, help="synthetic items: fraction of the real counts")
    parser.add_argument("--arch", default="qwen3")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=32_768)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from lm_eval.models.huggingface import HFLM

    from longrm_tasks.testing import build_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic_data(tmp / "data", args.context_words, args.scale) if args.context_words else "sample"
        model, tokenizer = build_model("causal", args.arch, hidden=args.hidden, layers=args.layers, heads=4,
                                       kv_heads=2, max_positions=args.max_length)
        tokenizer.save_pretrained(tmp / "tokenizer")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1, max_length=args.max_length, device="cpu")
        meter = Meter(lm.model)
        metadata = {"tokenizer": str(tmp / "tokenizer"), "data_dir": data, "max_length": args.max_length}
        run_design(lm, meter, {**metadata, "longrm_configs": "Math"}, "v2")  # warm-up: imports, first calls
        v1 = run_design(lm, meter, metadata, "v1")
        v2 = run_design(lm, meter, metadata, "v2")
    result = {
        "benchmark": "ll_forwards", "backend": "lm-eval hf (CPU)", "data": data if data == "sample" else
        f"synthetic {args.context_words}-word contexts x{args.scale}", "model": f"{args.arch} h{args.hidden} "
        f"L{args.layers} random", "threads": args.threads, "v1": v1, "v2": v2,
        "forwards_ratio_v1_over_v2": round(v1["forwards"] / v2["forwards"], 3),
        "prefill_tokens_ratio": round(v1["prefill_tokens"] / v2["prefill_tokens"], 3),
        "model_time_ratio": round(v1["model_s"] / v2["model_s"], 3),
        "wall_ratio": round(v1["wall_s"] / v2["wall_s"], 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
