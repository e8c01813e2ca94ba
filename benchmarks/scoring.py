"""Shared-prefix vs one-forward-per-candidate reward scoring, side by side, on CPU.

A random-weight sequence-classification model (4 layers, hidden 256) scores
Long-RewardBench-shaped items — one long context, 2 or 4 answers of ~300
tokens — with `RewardScorer(share_prefix=True)` and with the reference
behaviour (`share_prefix=False`, batch size 1: one full forward per candidate).

Each (shape, mode) runs in its own subprocess, so its peak RSS
(``ru_maxrss``) is its own; ``extra_rss_mb`` is that peak minus the RSS
before scoring (torch, model and items loaded), i.e. what scoring itself
needed. Modes of a shape run back to back to share the machine's load, each
with the same thread count (1 by default: on a shared 2-core machine a second
thread waits on whatever else runs, which swamps the comparison).
Prints ONE JSON line.

    flock /tmp/longrm-heavy.lock python benchmarks/scoring.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MODES = {"shared": dict(share_prefix=True), "unshared": dict(share_prefix=False, batch_size=1)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_items(context: int, candidates: int, answer: int, count: int, vocab: int, pad: int):
    """Token-level items: one random context, answers of ``answer`` +-10% tokens each."""
    import torch

    from longrm_tasks.rm.formatting import FormattedItem

    gen = torch.Generator().manual_seed(context * 10 + candidates)
    tokens = [t for t in range(vocab) if t != pad]

    def draw(n):
        return [tokens[i] for i in torch.randint(len(tokens), (n,), generator=gen).tolist()]

    items = []
    for _ in range(count):
        ctx = draw(context)
        lengths = torch.randint(int(answer * 0.9), int(answer * 1.1) + 1, (candidates,), generator=gen).tolist()
        seqs = [ctx + draw(n) for n in lengths]
        items.append(FormattedItem(seqs, [len(s) for s in seqs]))
    return items


def worker(args) -> None:
    import torch

    from longrm_tasks.rm.prefix_scorer import RewardScorer
    from longrm_tasks.testing import build_model

    torch.set_num_threads(args.threads)
    model, tokenizer = build_model("seq-cls", layers=args.layers, hidden=args.hidden, vocab_size=args.vocab)
    items = make_items(args.context, args.candidates, args.answer, args.items, args.vocab, tokenizer.pad_token_id)
    options = dict(MODES[args.mode])
    if args.prefill_chunk:
        options["prefill_chunk_size"] = args.prefill_chunk
    scorer = RewardScorer(model, tokenizer, **options)
    scorer.score_formatted(make_items(256, 2, 32, 1, args.vocab, tokenizer.pad_token_id)[0])  # warm-up
    before = rss_mb()
    best, results = float("inf"), None
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = [scorer.score_formatted(item) for item in items]
        best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "seconds": best,
        "scores": [r.scores for r in results],
        "tokens_processed": sum(r.tokens_processed for r in results),
        "unique_tokens": sum(r.unique_tokens for r in results),
        "padding_tokens": sum(r.padding_tokens for r in results),
        "forward_passes": sum(r.forward_passes for r in results),
        "peak_rss_mb": rss_mb(),
        "extra_rss_mb": rss_mb() - before,
        "threads": torch.get_num_threads(),
    }))


def run_worker(mode: str, context: int, candidates: int, args, prefill_chunk: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--context", str(context), "--candidates", str(candidates),
           "--answer", str(args.answer), "--items", str(args.items), "--repeats", str(args.repeats),
           "--layers", str(args.layers), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
           "--threads", str(args.threads)]
    if prefill_chunk:
        cmd += ["--prefill-chunk", str(prefill_chunk)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small contexts (1K, 2K) for a smoke run")
    parser.add_argument("--answer", type=int, default=300, help="answer length in tokens")
    parser.add_argument("--items", type=int, default=1, help="items per shape")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per run (the fastest counts)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run; 1 keeps timings steady on a machine shared with other jobs")
    parser.add_argument("--chunked", type=int, default=4096,
                        help="also time shared scoring with this prefill chunk size (0 = skip)")
    parser.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--candidates", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefill-chunk", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        return worker(args)

    contexts = [1024, 2048] if args.quick else [4096, 16384]
    if args.quick:
        args.answer, args.repeats = min(args.answer, 100), 1
    shapes, all_diffs, processed, unique = {}, [], 0, 0
    for context in contexts:
        for candidates in (2, 4):
            shared = run_worker("shared", context, candidates, args)
            unshared = run_worker("unshared", context, candidates, args)
            diff = max(abs(a - b) for sa, sb in zip(shared["scores"], unshared["scores"]) for a, b in zip(sa, sb))
            all_diffs.append(diff)
            processed += shared["tokens_processed"]
            unique += shared["unique_tokens"]
            shape = {
                "speedup": round(unshared["seconds"] / shared["seconds"], 2),
                "shared_s": round(shared["seconds"], 3),
                "unshared_s": round(unshared["seconds"], 3),
                "tokens_ratio_shared": round(shared["tokens_processed"] / shared["unique_tokens"], 4),
                "tokens_ratio_unshared": round(unshared["tokens_processed"] / unshared["unique_tokens"], 4),
                "padding_tokens_shared": shared["padding_tokens"],
                "forward_passes_shared": shared["forward_passes"],
                "forward_passes_unshared": unshared["forward_passes"],
                "peak_rss_mb_shared": round(shared["peak_rss_mb"]),
                "peak_rss_mb_unshared": round(unshared["peak_rss_mb"]),
                "extra_rss_mb_shared": round(shared["extra_rss_mb"]),
                "extra_rss_mb_unshared": round(unshared["extra_rss_mb"]),
                "max_abs_score_diff": diff,
            }
            if args.chunked and args.chunked < context:
                chunked = run_worker("shared", context, candidates, args, prefill_chunk=args.chunked)
                shape["chunked_s"] = round(chunked["seconds"], 3)
                shape["extra_rss_mb_chunked"] = round(chunked["extra_rss_mb"])
            shapes[f"{context // 1024}k_x{candidates}"] = shape
    print(json.dumps({
        "device": "cpu", "threads": shared["threads"],
        "model": {"layers": args.layers, "hidden": args.hidden, "vocab": args.vocab, "dtype": "float32"},
        "answer_tokens": args.answer, "items_per_shape": args.items, "chunked_prefill": args.chunked or None,
        "shapes": shapes,
        "tokens_ratio_shared": round(processed / unique, 4),
        "max_abs_score_diff": max(all_diffs),
    }))


if __name__ == "__main__":
    main()
