"""Time the lm-eval tasks' data preparation on a real-size synthetic Long-RewardBench.

What is timed is what `longrm_tasks.adapters.lm_eval.tasks.load_dataset` does
before lm-eval sees a document: read + validate the JSONL files (``load``),
render the judge prompts through the chat template, measure them with the
model's tokenizer and cut the over-long ones (``build``), and hand the
documents to lm-eval as a `datasets.Dataset` (``arrow``).

Two implementations run on the same data, each in its own subprocess (so peak
RSS is its own), back to back:

- ``naive``: the straightforward way — per document, render the whole chat,
  tokenize the whole prompt into a Python id list, cut the ids with
  `truncate_middle` and decode them back to text;
- ``ours``: `longrm_tasks.requests.build.build_judge_docs` — chat template rendered once per
  (kind, N) around a sentinel, the long head tokenized once per item (shared
  by its orders) in Rust batches without Python id lists, only the short
  answers tail per order, the text cut at the kept tokens' character offsets
  from that same pass (no re-tokenization, no decode).

The model context defaults to 65,536 tokens, so the 64k and 128k buckets are
cut and the cutting path is timed too (``--max-length 131072`` for a 128K
judge: then almost nothing is cut).

The data (1,900 records, real per-config counts and 4K-128K-token contexts:
`longrm_tasks.data.synthetic.generate_benchmark(scale=1.0)`) and a byte-level
BPE tokenizer with a real-size vocabulary (trained offline on Python sources
of the installed packages plus the synthetic text) are built once and cached
in ``--cache`` (default ``~/.cache/longrm-tasks/bench-prep``).

    flock /tmp/longrm-heavy.lock python benchmarks/prep.py [--order both] [--scale 0.1]

Prints ONE JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VOCAB = 65_536
MAX_LENGTH = 65_536  # a 64K-context judge: the 64k and 128k buckets must be cut, so cutting is timed too
GEN_TOKENS = 2_048


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def data_dir(cache: Path, scale: float) -> Path:
    """Write the synthetic benchmark's ``{Config}.jsonl`` files once."""
    from longrm_tasks.data.synthetic import BUCKET_TOKENS, generate_benchmark

    folder = cache / f"data-scale{scale:g}-v2"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # One synthetic word is about one token of the tokenizer below, so giving each bucket its token
        # count in words reproduces the real length distribution (and the real ~500 MB at scale 1).
        for config, records in generate_benchmark(scale=scale, context_words=dict(BUCKET_TOKENS)).items():
            with open(folder / f"{config}.jsonl", "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        done.write_text("ok\n")
    return folder


def _training_text(data: Path, limit_mb: int = 40):
    """Python sources of installed packages (varied English + code) plus some synthetic context."""
    import transformers

    budget = limit_mb << 20
    site = Path(transformers.__file__).resolve().parents[1]
    for path in sorted(site.glob("*/**/*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        budget -= len(text)
        yield text
        if budget <= 0:
            break
    with open(data / "LongQA.jsonl", encoding="utf-8") as fh:
        yield fh.readline()


def tokenizer_dir(cache: Path, data: Path) -> Path:
    """Train (once) a byte-level BPE with a real-size vocabulary and a ChatML chat template."""
    folder = cache / f"tokenizer-{VOCAB}"
    if (folder / "tokenizer.json").exists():
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrm_tasks.testing import CHATML_TEMPLATE, SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_text(data), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   model_max_length=MAX_LENGTH)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)
    return folder


def naive_docs(items, orders_for, tokenizer, budget: int) -> tuple[list[dict], int]:
    """The straightforward preparation: full render + full tokenization + id-level cut per document."""
    from longrm_tasks.requests.build import answers_part
    from longrm_tasks.prompts.judge_prompts import judge_messages, render_chat
    from longrm_tasks.context.truncation import truncate_middle

    docs, truncated = [], 0
    for item in items:
        for order in orders_for(item):
            text = render_chat(tokenizer, judge_messages(item, order))
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > budget:
                tail = tokenizer("\n\n" + answers_part(item, order), add_special_tokens=False)["input_ids"]
                kept, cut = truncate_middle(ids, budget, protect_tail=len(tail) + 8)
                text = tokenizer.decode(kept)
                truncated += 1
            docs.append({"key": f"{item.config}/{item.id}", "order": list(order), "prompt": text,
                         "prompt_tokens": len(ids)})
    return docs, truncated


def run_mode(mode: str, data: Path, tok_path: Path, order: str, max_length: int, profile: str | None) -> dict:
    """One preparation pass in this process; returns its figures."""
    import datasets
    from transformers import AutoTokenizer

    from longrm_tasks.context.fitting import Fitting, FitStats, Protocol
    from longrm_tasks.requests.build import build_judge_docs
    from longrm_tasks.data import load_benchmark
    from longrm_tasks.prompts.orders import OrderScheme

    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    scheme = OrderScheme.parse(order)
    base_rss = rss_mb()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    bench = load_benchmark(str(data))
    t1 = time.perf_counter()
    if mode == "ours":
        stats = FitStats()
        docs = build_judge_docs(bench.items, scheme.orders_for, judge="generative", tokenizer=tokenizer,
                                fitting=Fitting(Protocol.FIT, max_length, GEN_TOKENS), orders=order, stats=stats)
        truncated = stats.truncated
    else:
        from longrm_tasks.context.fitting import MARGIN

        docs, truncated = naive_docs(bench.items, scheme.orders_for, tokenizer, max_length - GEN_TOKENS - MARGIN)
    t2 = time.perf_counter()
    dataset = datasets.Dataset.from_list(docs)
    t3 = time.perf_counter()
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    tokens = sum(d["prompt_tokens"] for d in docs)
    return {"items": len(bench.items), "docs": len(dataset), "prompt_tokens": tokens, "truncated": truncated,
            "load_s": round(t1 - t0, 2), "build_s": round(t2 - t1, 2), "arrow_s": round(t3 - t2, 2),
            "total_s": round(t3 - t0, 2), "peak_rss_mb": round(rss_mb(), 1),
            "rss_before_mb": round(base_rss, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the real item counts (default 1.0)")
    ap.add_argument("--order", default="paper", help="paper | both | hash:SEED (default paper)")
    ap.add_argument("--max-length", type=int, default=MAX_LENGTH, help=f"model context (default {MAX_LENGTH})")
    ap.add_argument("--modes", default="naive,ours", help="comma-separated: naive, ours")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "longrm-tasks" / "bench-prep")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each mode to stderr")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    data = data_dir(args.cache, args.scale)
    tok = tokenizer_dir(args.cache, data)
    if args._child:
        print(json.dumps(run_mode(args._child, data, tok, args.order, args.max_length, "1" if args.profile else None)))
        return 0

    size_mb = sum(p.stat().st_size for p in data.glob("*.jsonl")) / 2**20
    out = {"benchmark": "prep", "order": args.order, "data_mb": round(size_mb, 1), "vocab": VOCAB,
           "max_length": args.max_length, "cpus": os.cpu_count()}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--_child", mode, "--scale", str(args.scale), "--order", args.order,
               "--max-length", str(args.max_length), "--cache", str(args.cache)] + (["--profile"] if args.profile else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if args.profile:
            sys.stderr.write(f"===== {mode}\n{proc.stderr}")
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["items_per_s"] = round(figures["items"] / figures["total_s"], 1)
        figures["mb_per_s"] = round(size_mb / figures["total_s"], 1)
        figures["tokens_per_s"] = round(figures["prompt_tokens"] / figures["total_s"])
        out[mode] = figures
    if "naive" in out and "ours" in out:
        out["speedup_total"] = round(out["naive"]["total_s"] / out["ours"]["total_s"], 2)
        out["speedup_build"] = round(out["naive"]["build_s"] / out["ours"]["build_s"], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
