"""Shared-prefix reward scoring per model family, and the unshared fallback's memory, side by side on CPU.

For each family -- Llama, Qwen3 (full attention), Gemma 3 (sliding/global mix)
and Mistral (a window on every layer) -- a random-weight sequence-classification
model scores Best-of-4 items (one long context, four ~300-token answers) at 4K
and 16K context tokens, four ways, each in its own subprocess (so ``ru_maxrss``
is its own), back to back:

- ``shared``: `RewardScorer` as it runs by default (the context once, answers behind its cache);
- ``reference``: one full forward per candidate (``share_prefix=False, batch_size=1``), the
  reference evaluator's cost: the speed-up is measured against it;
- ``fallback``: the unshared path as it runs now with ``batch_size=4`` (never padded: equal
  lengths share a batch, the rest run one per forward);
- ``padded``: what that fallback did before: the four candidates padded to the longest in one
  batch with a 2-D attention mask (rebuilt here, only as the baseline), whose peak memory grows
  with candidates x longest and the model's batch x n x n mask.

Reported per family and shape: speed-up, tokens processed / unique tokens, the rewards' max
difference from the reference, and the fallback's extra peak RSS (MB above the loaded model)
padded vs unpadded. The sliding windows are shorter than the contexts (Gemma 3: 1024, Mistral:
2048 tokens), so the window really cuts into the shared prefix.

    flock /tmp/longrm-heavy.lock python benchmarks/scoring_families.py [--quick]

Prints ONE JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scoring import ROOT, make_items, rss_mb  # noqa: E402  (the sibling benchmark's item maker)

FAMILIES = {"llama": None, "qwen3": None, "gemma3": 1024, "mistral": 2048}  # arch -> sliding window
MODES = {"shared": dict(share_prefix=True, batch_size=4), "reference": dict(share_prefix=False, batch_size=1),
         "fallback": dict(share_prefix=False, batch_size=4), "padded": dict(share_prefix=False, batch_size=4)}


def padded_scores(scorer, item) -> list[float]:
    """The former fallback: every candidate right-padded to the longest, one batch, a 2-D padding mask."""
    import torch

    from longrm_tasks.rm.prefix_scorer import pooled_index

    sequences = item.input_ids
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), scorer.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.inference_mode():
        hidden = scorer.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=False).last_hidden_state
        slots = [pooled_index(seq, scorer.pad_token_id) for seq in sequences]
        return scorer._head(hidden[torch.arange(len(slots)), slots])


def worker(args) -> None:
    import torch

    from longrm_tasks.rm.prefix_scorer import RewardScorer
    from longrm_tasks.testing import build_model

    torch.set_num_threads(args.threads)
    model, tokenizer = build_model("seq-cls", args.arch, layers=args.layers, hidden=args.hidden,
                                   vocab_size=args.vocab, sliding_window=FAMILIES[args.arch])
    items = make_items(args.context, 4, args.answer, 1, args.vocab, tokenizer.pad_token_id)
    scorer = RewardScorer(model, tokenizer, **MODES[args.mode])
    warm = make_items(256, 2, 32, 1, args.vocab, tokenizer.pad_token_id)[0]
    score = (lambda item: padded_scores(scorer, item)) if args.mode == "padded" else \
        (lambda item: scorer.score_formatted(item).scores)
    score(warm)
    before = rss_mb()
    best, scores, counted = float("inf"), None, [scorer.score_formatted(i) for i in items] \
        if args.mode != "padded" else []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scores = [score(item) for item in items]
        best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "seconds": best, "scores": scores, "share_prefix": scorer.share_prefix,
        "tokens_processed": sum(r.tokens_processed for r in counted),
        "unique_tokens": sum(r.unique_tokens for r in counted),
        "padding_tokens": sum(r.padding_tokens for r in counted),
        "extra_rss_mb": rss_mb() - before,
    }))


def run_worker(arch: str, mode: str, context: int, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--arch", arch, "--context", str(context),
           "--answer", str(args.answer), "--repeats", str(args.repeats), "--layers", str(args.layers),
           "--hidden", str(args.hidden), "--vocab", str(args.vocab), "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"scoring_families: {arch} {mode} at {context} tokens failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="contexts of 1K and 2K tokens, 100-token answers")
    parser.add_argument("--answer", type=int, default=300, help="answer length in tokens")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per run (the fastest counts)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1: steady on a shared machine)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    parser.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--arch", choices=sorted(FAMILIES), help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        return worker(args)

    contexts = [1024, 2048] if args.quick else [4096, 16384]
    if args.quick:
        args.answer, args.repeats = min(args.answer, 100), 1
    families, all_diffs = {}, []
    for arch in args.families.split(","):
        shapes = {}
        for context in contexts:
            runs = {mode: run_worker(arch, mode, context, args) for mode in MODES}
            reference = [s for item in runs["reference"]["scores"] for s in item]
            diffs = {mode: max(abs(a - b) for a, b in zip([s for item in runs[mode]["scores"] for s in item],
                                                         reference)) for mode in ("shared", "fallback", "padded")}
            all_diffs.append(diffs["shared"])
            shared = runs["shared"]
            shapes[f"{context // 1024}k_x4"] = {
                "shares_prefix": shared["share_prefix"],
                "speedup": round(runs["reference"]["seconds"] / shared["seconds"], 2),
                "shared_s": round(shared["seconds"], 3), "reference_s": round(runs["reference"]["seconds"], 3),
                "tokens_ratio_shared": round(shared["tokens_processed"] / shared["unique_tokens"], 4),
                "tokens_ratio_reference": round(runs["reference"]["tokens_processed"]
                                                / runs["reference"]["unique_tokens"], 4),
                "max_abs_score_diff": diffs["shared"],
                "fallback_extra_rss_mb_padded": round(runs["padded"]["extra_rss_mb"]),
                "fallback_extra_rss_mb_unpadded": round(runs["fallback"]["extra_rss_mb"]),
                "fallback_padding_tokens": runs["fallback"]["padding_tokens"],
                "fallback_s_padded": round(runs["padded"]["seconds"], 3),
                "fallback_s_unpadded": round(runs["fallback"]["seconds"], 3),
                "fallback_max_abs_score_diff": max(diffs["fallback"], diffs["padded"]),
            }
        families[arch] = {"sliding_window": FAMILIES[arch], "shapes": shapes}
    print(json.dumps({
        "benchmark": "scoring_families", "device": "cpu", "threads": args.threads,
        "model": {"layers": args.layers, "hidden": args.hidden, "vocab": args.vocab, "dtype": "float32"},
        "candidates": 4, "answer_tokens": args.answer, "families": families,
        "max_abs_score_diff": max(all_diffs),
    }))


if __name__ == "__main__":
    main()
