"""`longrm demo`: the main job end to end, offline.

Runs the real lm-eval command line (`longrm eval`, i.e. `lm_eval` with our tasks)
on the bundled synthetic sample, then `longrm report` on its output. Without
``--model`` it first builds a tiny random-weight model and an offline tokenizer,
so it works on a machine with no hub access; its numbers are then those of a
random model — a smoke test of the pipeline, not a result.
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "run lm_eval --tasks long_rewardbench (+ the log-likelihood judge) on the offline sample and report"


def add_arguments(p) -> None:
    p.add_argument("--model", metavar="PATH", help="a local causal LM (default: build a tiny random one)")
    p.add_argument("--out", default="longrm-demo", help="output folder (default: ./longrm-demo)")
    p.add_argument("--data", default="sample", help="'sample' (default), 'hub' or a folder of {Config}.jsonl")
    p.add_argument("--max-gen-toks", type=int, default=32,
                   help="generation budget of the generative judge (the protocol's is 2048; the demo keeps it small)")
    p.add_argument("--limit", type=int, help="at most this many documents per task")


def _lm_eval(tasks: str, model: Path, out: Path, args) -> Path:
    from longrm_tasks.commands.eval import main as lm_eval_main

    argv = ["--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--tasks", tasks,
            "--metadata", json.dumps({"data_dir": args.data}), "--output_path", str(out), "--log_samples",
            "--gen_kwargs", f"max_gen_toks={args.max_gen_toks}", "--batch_size", "4"]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    status = lm_eval_main(argv)
    if status:
        raise SystemExit(status)
    return out


def run(args) -> int:
    from longrm_tasks.commands import report

    out = Path(args.out)
    model = Path(args.model) if args.model else None
    if model is None:
        from longrm_tasks.testing import save_tiny_model

        model = save_tiny_model(out / "tiny-random-llama", kind="causal", arch="llama")
        print(f"built a tiny random-weight model at {model} (its scores are noise: this is a smoke test)")
    runs = [f"generative={_lm_eval('long_rewardbench', model, out / 'generative', args)}",
            f"verdict-loglik={_lm_eval('long_rewardbench_ll', model, out / 'loglikelihood', args)}"]
    report_args = type("Args", (), {"runs": runs, "markdown": str(out / "report.md"),
                                    "json": str(out / "report.json"), "plot": str(out / "length.png")})()
    status = report.run(report_args)
    print(f"report: {out / 'report.md'}, {out / 'report.json'}, plot: {out / 'length.png'}")
    return status
