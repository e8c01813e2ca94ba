"""`hf-rm` data parallel: two CPU processes (torchrun, gloo) under the real lm-eval command line.

lm-eval shards the documents by rank when the model exposes ``rank``/``world_size``
and gathers the per-document metrics on rank 0. The check: the same scores per
document and the same metrics as one process, and each process ran only its own
share of the model forward passes (every process prints its own ``hf-rm[rank r/2]``
line with the passes it ran; before data parallelism each one ran all of them).
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")
torch = pytest.importorskip("torch")

from longrm_tasks.testing import save_tiny_model  # noqa: E402

TASK = "long_rewardbench_rm_longqa"  # pairs and Best-of-N items of one config: 15 documents
# Not anchored at the line start: one rank's line may follow the other rank's progress bar on stderr.
PASSES = re.compile(r"(hf-rm(?:\[rank (\d)/2\])?): (\d+) items scored;.*; (\d+) forward passes$", re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process(model):
    """The reference run in this process (lm-eval's Python API indexes only our task folder: faster)."""
    import lm_eval
    import lm_eval.api.registry
    from lm_eval.tasks import TaskManager

    from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR, register_models

    register_models(lm_eval.api.registry)
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata={"data_dir": "sample"})
    out = lm_eval.simple_evaluate(model="hf-rm", model_args=f"pretrained={model},dtype=float32,batch_size=2",
                                  tasks=[TASK], task_manager=manager, device="cpu", log_samples=True)
    samples = {row["doc_id"]: _rewards(row) for rows in out["samples"].values() for row in rows}
    return out, samples


def _rewards(sample_row) -> list[float]:
    """The reward per answer (the samples file holds them as strings, the Python API as floats)."""
    return [float(resp[0]) for resp in sample_row["filtered_resps"]]


def _run(launcher: list[str], model, out, cwd) -> str:
    cmd = [sys.executable, *launcher, "-m", "lm_eval", "--model", "hf-rm",
           "--model_args", f"pretrained={model},dtype=float32,batch_size=2", "--device", "cpu",
           "--tasks", TASK, "--metadata", '{"data_dir": "sample"}', "--output_path", str(out), "--log_samples"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("LONGRM_TASKS_NO_HOOK", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def _results(out):
    [results] = out.rglob("results_*.json")
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            samples[row["doc_id"]] = _rewards(row)
    return json.loads(results.read_text()), samples


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_processes_give_one_process_metrics_and_split_the_forward_passes(tmp_path, capfd):
    model = save_tiny_model(tmp_path / "rm", kind="seq-cls", arch="qwen2", hidden=32, layers=1)
    one, one_samples = _one_process(model)
    single_log = capfd.readouterr().err
    dp_log = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                   "--master_port", str(_free_port())], model, tmp_path / "two", tmp_path)
    two, two_samples = _results(tmp_path / "two")
    assert one["n-samples"] == two["n-samples"]
    assert len(one_samples) == 15 and one_samples == two_samples  # every document once, the same rewards
    for task, metrics in one["results"].items():
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isnan(value):
                # rows reach the aggregation in another order: float sums may differ in the last bit
                assert two["results"][task][key] == pytest.approx(value, abs=1e-12), (task, key)

    [(name, _, items, total)] = PASSES.findall(single_log)
    per_rank = {rank: (int(n), int(passes)) for name, rank, n, passes in PASSES.findall(dp_log)}
    assert sorted(per_rank) == ["0", "1"], dp_log[-3000:]
    assert sum(n for n, _ in per_rank.values()) == int(items) == 15  # each item scored on one rank only
    assert sum(p for _, p in per_rank.values()) == int(total)
    assert all(0 < p < int(total) for _, p in per_rank.values())
