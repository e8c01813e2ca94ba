"""Learning check, larger than the test's: longer contexts, more data, more held-out pairs.

Trains tiny models through the real `longrm train` command on the synthetic long-context
preference task of `longrm_tasks.train.learning_check` (a fact hidden in a distractor context;
chosen answers agree with it, rejected ones contradict it) and prints ONE JSON line with the
held-out pairwise accuracy before and after training, for the generative path (SFT -> alignment,
ranked by length-normalised log-probability) and the discriminative path (Bradley-Terry reward
model, ranked by scalar reward). Chance is 0.5. Training contexts are 50-400 filler words, every
held-out context 400 (about three times the test's), so the figure also says whether what was
learnt on short contexts holds at the longest.

    PYTHONPATH=. python benchmarks/learning_check.py [--context-words 400] [--min-context-words 50]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time


def main() -> None:
    from longrm_tasks.train.learning_check import CheckSettings, run_check

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="generative,discriminative")
    parser.add_argument("--context-words", type=int, default=400,
                        help="filler words of every held-out context and of the longest training ones")
    # Trained on 50-400 words, judged on 400: trained on 300 words only, the tiny model stayed on
    # its plateau (generative 0.71, discriminative 0.89 with twice these epochs).
    parser.add_argument("--min-context-words", type=int, default=50,
                        help="draw training context lengths from [this, --context-words]; 0 = all full length")
    parser.add_argument("--train-items", type=int, default=2048)
    parser.add_argument("--heldout-items", type=int, default=200)
    parser.add_argument("--num-rejected", type=int, default=3, help="V wrong answers per item")
    # SFT sees one example per item, the reward stage V pairs per item: it needs fewer epochs.
    parser.add_argument("--sft-epochs", type=float, default=8.0)
    parser.add_argument("--reward-epochs", type=float, default=4.0)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    out = {"benchmark": "learning_check", "context_words": args.context_words,
           "min_context_words": args.min_context_words or None, "train_items": args.train_items,
           "num_rejected": args.num_rejected, "layers": args.layers}
    for path in args.paths.split(","):
        settings = CheckSettings(path=path, train_items=args.train_items, heldout_items=args.heldout_items,
                                 context_words=args.context_words,
                                 min_context_words=args.min_context_words or None,
                                 num_rejected=args.num_rejected,
                                 epochs=args.sft_epochs if path == "generative" else args.reward_epochs,
                                 layers=args.layers, seed=args.seed)
        start = time.perf_counter()
        # The Trainer prints its logs to stdout; keep stdout for the one JSON line.
        with tempfile.TemporaryDirectory(prefix=f"learning-check-{path}-") as workdir, \
                contextlib.redirect_stdout(sys.stderr):
            result = run_check(workdir, settings)
        out[path] = {"accuracy_before": round(result["accuracy_before"], 4),
                     "accuracy_after": round(result["accuracy_after"], 4),
                     "heldout_pairs": result["heldout_pairs"], "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
