"""benchmarks/gpu_check.py --smoke: the GPU check's own code on the CPU with tiny shapes, one JSON line.

The smoke run is what keeps the (GPU-only) check from rotting: it builds the
same models, scorers and trainers, and its figures must be self-consistent —
shared-prefix and per-candidate scores agree, our alignment loss equals TRL's
SimPO loss on the same token ids, and every configuration reports its timing.
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("trl")

from project import BENCHMARKS  # noqa: E402

SCRIPT = BENCHMARKS / "gpu_check.py"


def test_smoke_run_prints_one_consistent_json_line():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["benchmark"] == "gpu_check" and report["smoke"] is True
    [scoring] = report["scoring"].values()
    rows = [scoring[key] for key in ("256", "512")]
    for row in rows:
        assert row["shared_forward_passes"] == 2  # the prefix once, the four remainders packed in one pass
        assert row["unshared_forward_passes"] == 4  # the reference: one full forward per candidate
        assert row["max_abs_score_diff"] < 1e-4 < row["score_spread"]
        assert row["shared_tokens_per_s"] > 0 and row["unshared_tokens_per_s"] > 0
    align = report["alignment"]
    assert {"ours/256", "trl/256", "ratios/256"} <= set(align)
    assert align["ratios/256"]["loss_abs_diff"] < 1e-5  # our SimPO loss is TRL's on the same ids
    assert align["ours/256"]["step_s"] > 0 and align["trl/256"]["step_s"] > 0
