"""`longrm demo`: the main job end to end, offline, explained in one screen.

Runs one real lm-eval command (both judges of the benchmark on the bundled
synthetic sample), prints that command first so it can be copied and rerun on
a real model, keeps lm-eval's own logs in a file (shown when it fails), then
prints `longrm report` on its output. Without ``--model`` it first builds a
tiny random-weight model and an offline tokenizer, so it works with no hub
access; its numbers are then those of a random model (a smoke test of the
pipeline, not a result); a random model writes no verdict at all, which the
report shows as unparsed, not as an accuracy.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HELP = "run lm_eval --tasks long_rewardbench (+ the log-likelihood judge) on the offline sample and report"

TASKS = "long_rewardbench,long_rewardbench_ll"
LOG_TAIL_LINES = 40


def add_arguments(p) -> None:
    p.add_argument("--model", metavar="PATH", help="a local causal LM (default: build a tiny random one)")
    p.add_argument("--out", default="longrm-demo", help="output folder (default: ./longrm-demo)")
    p.add_argument("--data", default="sample", help="'sample' (default), 'hub' or a folder of {Config}.jsonl")
    p.add_argument("--max-gen-toks", type=int, default=32,
                   help="generation budget of the generative judge (the protocol's is 2048; the demo keeps it small)")
    p.add_argument("--limit", type=int, help="at most this many documents per task")


def start_up_hook_active() -> bool:
    """Whether this interpreter runs the start-up hook (then plain ``lm_eval`` sees our tasks)."""
    return any(type(finder).__name__ == "LmEvalWatcher" for finder in sys.meta_path)


def lm_eval_arguments(model: Path, out: Path, args) -> list[str]:
    argv = ["--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--tasks", TASKS,
            "--metadata", json.dumps({"data_dir": args.data}), "--gen_kwargs", f"max_gen_toks={args.max_gen_toks}",
            "--batch_size", "8", "--output_path", str(out), "--log_samples"]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    return argv


def shown_command(program: list[str], argv: list[str]) -> str:
    """A copyable shell command, one option (and its value) per continued line."""
    lines, current = [], shlex.join(program)
    for word in argv:
        if word.startswith("--") and current:
            lines.append(current)
            current = ""
        current = f"{current} {shlex.quote(word)}".strip()
    lines.append(current)
    return " \\\n    ".join(lines)


def _data_line(data: str) -> str:
    if data == "sample":
        from longrm_tasks.data.loading import SAMPLE_DIR

        return f"data: the bundled synthetic sample (data_dir=sample: {SAMPLE_DIR})"
    if data == "hub":
        return "data: the hub dataset LCM-Lab/LongRewardBench (data_dir=hub)"
    return f"data: {Path(data).resolve()} (data_dir={data})"


def run_lm_eval(program: list[str], argv: list[str], log: Path) -> int:
    """Run the command with its output in ``log``; on failure print the log's tail. Returns the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run([sys.executable, *program, *argv], stdout=handle, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
        print(f"lm_eval failed (exit {done.returncode}) after {seconds:.0f} s; last lines of {log}:", file=sys.stderr)
        print("\n".join(f"  | {line}" for line in tail), file=sys.stderr)
        return done.returncode
    print(f"lm_eval finished in {seconds:.0f} s (its log: {log})")
    return 0


def run(args) -> int:
    from longrm_tasks.atomic import check_writable
    from longrm_tasks.commands import report

    out = Path(args.out)
    check_writable(out / "report.json", "--out", make_parents=True)  # mkdir -p, or one line saying why not
    if args.model:
        model = Path(args.model)
        if not model.is_dir():
            from longrm_tasks.errors import InputError

            raise InputError("not a folder with a saved causal LM (config.json, weights, tokenizer)",
                             path=str(model), field="--model")
    else:
        from transformers.utils import logging as transformers_logging

        from longrm_tasks.testing import save_tiny_model

        transformers_logging.disable_progress_bar()  # a one-shard save needs no progress bar in the demo
        from longrm_tasks.atomic import out_of_space

        try:
            model = save_tiny_model(out / "tiny-random-llama", kind="causal", arch="llama")
        except Exception as err:  # a full disk: safetensors says so without naming a file
            full = out_of_space(err, out, hint="free space, then run the demo again")
            if full is None:
                raise
            raise full from err
        print(f"model: a tiny random-weight Llama built at {model} (its scores are noise: this is a smoke test)")

    lm_eval_out = out / "lm-eval"
    argv = lm_eval_arguments(model, lm_eval_out, args)
    # Show exactly what runs: plain `lm_eval` when the start-up hook is on, `longrm eval` (the same
    # CLI with our tasks added explicitly) when it is off.
    if start_up_hook_active():
        program, shown = ["-m", "lm_eval"], ["lm_eval"]
    else:
        program, shown = ["-m", "longrm_tasks.cli", "eval"], ["longrm", "eval"]
    print(_data_line(args.data))
    print("ran (copy it, and replace pretrained=... and data_dir to evaluate a real model):")
    print(shown_command(shown, argv))
    status = run_lm_eval(program, argv, out / "lm_eval.log")
    if status:
        return status

    parser = argparse.ArgumentParser(prog="longrm report")
    report.add_arguments(parser)
    report_args = parser.parse_args([str(lm_eval_out), "--markdown", str(out / "report.md"),
                                     "--json", str(out / "report.json"), "--plot", str(out / "length.png")])
    print(f"\n$ longrm report {lm_eval_out}")
    status = report.run(report_args)
    print(f"written: {out / 'report.md'}, {out / 'report.json'}, plot {out / 'length.png'}")
    return status
