"""Start-up cost of ``longrm eval`` with the narrow task index vs lm-eval's full index, one run.

Every lm-eval run builds a ``TaskManager`` that indexes lm-eval's own ~14K task
YAMLs before it looks at ``--tasks``. When every requested task is ours,
``longrm eval`` indexes only our folder (`longrm_tasks.adapters.lm_eval.index`);
``LONGRM_TASKS_FULL_INDEX=1`` restores the full index. This script runs the same
short job both ways, alternating (so background load hits both alike), in fresh
processes: lm-eval's no-op ``dummy`` model on the bundled sample with ``--limit 1``,
so the figures are almost all start-up. It also times the index alone (one
``TaskManager`` each way, in-process) and checks both runs printed the same table.

    python benchmarks/startup.py [--repeats 3]

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = "long_rewardbench_rm"
COMMAND = [sys.executable, "-m", "longrm_tasks.cli", "eval", "--model", "dummy", "--tasks", TASK,
           "--metadata", json.dumps({"data_dir": "sample"}), "--limit", "1"]


def one_run(full_index: bool) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the child) and the printed results table."""
    # Offline: lm-eval's dummy model otherwise retries the hub for a gpt2 tokenizer (~45 s where it is unreachable).
    env = dict(os.environ, LONGRM_TASKS_FULL_INDEX="1" if full_index else "0", HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(COMMAND, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"startup benchmark: `longrm eval` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    table = "\n".join(line for line in done.stdout.splitlines() if line.startswith("|"))
    return wall, cpu, table


def index_seconds() -> dict[str, float]:
    """One TaskManager over lm-eval's tasks plus ours vs over our folder alone (what the two runs build)."""
    from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR
    from longrm_tasks.compat import lm_eval_task_manager_class

    manager = lm_eval_task_manager_class()
    start = time.perf_counter()
    full = manager(include_path=[str(TASK_DIR)])
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    narrow = manager(include_path=[str(TASK_DIR)], include_defaults=False)
    narrow_s = time.perf_counter() - start
    assert TASK in narrow.all_tasks and TASK in full.all_tasks
    return {"index_full_s": round(full_s, 3), "index_narrow_s": round(narrow_s, 3),
            "index_full_names": len(full.all_tasks), "index_narrow_names": len(narrow.all_tasks)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs each way, alternating (default 3)")
    args = parser.parse_args(argv)
    runs: dict[bool, list[tuple[float, float, str]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for full in (True, False):
            runs[full].append(one_run(full))
    tables = {table for results in runs.values() for _, _, table in results}
    best = {full: (min(r[0] for r in results), min(r[1] for r in results)) for full, results in runs.items()}
    print(json.dumps({
        "benchmark": "startup", "task": TASK, "model": "dummy", "limit": 1, "repeats": args.repeats,
        "wall_full_s": round(best[True][0], 2), "wall_narrow_s": round(best[False][0], 2),
        "cpu_full_s": round(best[True][1], 2), "cpu_narrow_s": round(best[False][1], 2),
        "wall_ratio": round(best[True][0] / best[False][0], 2), "cpu_ratio": round(best[True][1] / best[False][1], 2),
        "same_results": len(tables) == 1, **index_seconds(),
    }))


if __name__ == "__main__":
    main()
