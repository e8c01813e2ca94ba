"""`longrm eval` indexes only our task folder when every requested task is ours (adapters/lm_eval/index.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from longrm_tasks.adapters.lm_eval import index as lm_eval_index  # noqa: E402
from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR  # noqa: E402
from longrm_tasks.compat import lm_eval_evaluator_config_class, lm_eval_task_manager_class  # noqa: E402

OURS = Path(TASK_DIR)


@pytest.mark.parametrize("tasks, include_path, narrow", [
    (["long_rewardbench_rm"], None, True),
    ("long_rewardbench,long_rewardbench_ll", None, True),          # lm-eval's comma form
    (["long_rewardbench_pairwise_math"], [str(OURS)], True),      # our own folder named again
    (["long_rewardbench_rm", "hellaswag"], None, False),          # one of lm-eval's tasks
    (["long_rewardbench_*"], None, False),                        # a glob could match lm-eval's names too
    (["some/dir/task.yaml"], None, False),                        # a path lm-eval reads from disk
    ([{"task": "x", "dataset_path": "y"}], None, False),          # an inline config
    (["long_rewardbench_rm"], ["/elsewhere/tasks"], False),        # a user folder may shadow or reach anything
    ([], None, False),
    (None, None, False),
])
def test_only_runs_of_our_exact_names_narrow_the_index(tasks, include_path, narrow):
    assert lm_eval_index.all_ours(tasks, include_path, OURS) is narrow


def _process(tasks, include_path=None):
    config = lm_eval_evaluator_config_class()(tasks=tasks, include_path=include_path)
    return config.process_tasks()


def test_the_narrow_manager_builds_the_same_task_configs_and_everything_is_restored():
    config_cls, manager_cls = lm_eval_evaluator_config_class(), lm_eval_task_manager_class()
    before = (config_cls.process_tasks, manager_cls.__init__)
    full = _process(["long_rewardbench_rm"])
    with lm_eval_index.narrow_task_index(OURS):
        narrow = _process(["long_rewardbench_rm"])
        mixed = _process(["long_rewardbench_rm", "hellaswag"])
    assert (config_cls.process_tasks, manager_cls.__init__) == before
    assert "hellaswag" in full.all_tasks and "hellaswag" in mixed.all_tasks  # lm-eval's tasks kept when asked for
    assert "hellaswag" not in narrow.all_tasks
    assert set(narrow.all_tasks) == lm_eval_index.our_names(str(OURS))
    assert set(narrow.all_tasks) <= set(full.all_tasks)
    # Same entries (file, kind, config) for every one of our names: the run builds identical tasks.
    for name in narrow.all_tasks:
        assert narrow.task_index[name] == full.task_index[name], name


def test_longrm_eval_gives_the_same_results_with_and_without_the_full_index(tmp_path, monkeypatch, capsys):
    from longrm_tasks import cli
    from longrm_tasks.commands.eval import FULL_INDEX_ENV

    monkeypatch.chdir(tmp_path)
    results = {}
    for full in ("1", "0"):
        monkeypatch.setenv(FULL_INDEX_ENV, full)
        out = tmp_path / f"out{full}"
        code = cli.main(["eval", "--model", "dummy", "--tasks", "long_rewardbench_rm", "--limit", "2",
                         "--metadata", json.dumps({"data_dir": "sample"}), "--output_path", str(out)])
        assert code == 0, capsys.readouterr().err
        [path] = out.rglob("results_*.json")
        payload = json.loads(path.read_text())
        results[full] = (payload["results"], payload["n-samples"], payload["configs"])
    assert results["1"] == results["0"]
