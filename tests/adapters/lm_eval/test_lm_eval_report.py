"""`longrm report` on lm-eval output, and agreement of lm-eval's per-item results with `longrm score`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from longrm_tasks.adapters.lm_eval.metrics import judged  # noqa: E402
from longrm_tasks.adapters.lm_eval.report import export_predictions, load_lm_eval_run  # noqa: E402
from longrm_tasks.commands.score import score_files  # noqa: E402
from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.verdicts.predictions import read_predictions  # noqa: E402
from longrm_tasks.report.runs import load_run, load_runs  # noqa: E402
from longrm_tasks.testing import save_tiny_model  # noqa: E402

from project import TASK_DIR  # noqa: E402
PAPER_KEYS = ["AVG", "PairWise Avg", "Rank Avg", "Same", "Diff", "Rank2", "Rank3", "Rank4", "Length Avg",
              "LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math", "4k", "8k", "16k", "32k", "64k", "128k"]


def _save_like_output_path(out, results: dict, model_name: str) -> dict:
    """Write a `simple_evaluate` result the way `lm_eval --output_path OUT --log_samples` does; its samples."""
    from lm_eval.loggers import EvaluationTracker

    samples = results.pop("samples")
    tracker = EvaluationTracker(output_path=str(out))
    tracker.general_config_tracker.model_name = model_name
    tracker.general_config_tracker.model_name_sanitized = model_name
    tracker.save_results_aggregated(results=results, samples=samples)
    for task, task_samples in samples.items():
        tracker.save_results_samples(task_name=task, samples=task_samples)
    return samples


@pytest.fixture(scope="module")
def ll_run(tmp_path_factory):
    """The whole `long_rewardbench_ll` group on the bundled sample, both orders, prompts cut to 1,024 tokens (fit)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    root = tmp_path_factory.mktemp("lm_eval_ll")
    model = save_tiny_model(root / "tiny", hidden=32, layers=1, max_positions=4096)
    meta = {"pretrained": str(model), "data_dir": "sample", "order": "both", "max_length": 1024, "protocol": "fit"}
    results = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model), "max_length": 1024}, tasks=["long_rewardbench_ll"],
        task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=meta),
        device="cpu", log_samples=True)
    samples = _save_like_output_path(root / "out", results, "tiny")
    return root / "out", results, samples["long_rewardbench_ll_all"]


def test_group_table_shows_the_paper_metrics_of_the_whole_benchmark(ll_run):
    _, results, samples = ll_run
    group = results["groups"]["long_rewardbench_ll"]
    task = results["results"]["long_rewardbench_ll_all"]
    assert len(samples) == 2 * 58  # every sample item, in both orders
    for key in PAPER_KEYS + ["extra/truncated", "extra/consistent_accuracy"]:
        assert group[f"{key},none"] == task[f"{key},none"]  # one child: the group value is the task value
    assert task["extra/truncated,none"] == 116 and task["extra/skipped,none"] == 0


def test_report_recomputes_lm_eval_numbers_and_agrees_with_longrm_score(ll_run, tmp_path):
    out, results, samples = ll_run
    run = load_run(str(out))
    assert run.name == "tiny [ll]"
    task = results["results"]["long_rewardbench_ll_all"]
    for key in PAPER_KEYS:
        assert run.metrics[key] == pytest.approx(task[f"{key},none"], abs=1e-12)
    assert run.metrics["extra"]["both_orders"]["pairs"] == 30
    assert run.metrics["extra"]["truncated"] == 116

    files = export_predictions(out, tmp_path / "preds")
    assert sorted(f.name for f in files) == sorted(f"{c}.jsonl" for c in
                                                   ["LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math"])
    rescored = score_files([str(tmp_path / "preds")])
    for key in PAPER_KEYS:  # the same rows summed in another order: equal up to float rounding
        assert rescored[key] == pytest.approx(run.metrics[key], abs=1e-12)
    for key in ("items", "presentations", "unparsed", "truncated", "truncated_tokens", "skipped", "counts",
                "both_orders"):
        assert rescored["extra"][key] == pytest.approx(run.metrics["extra"][key], abs=1e-12)
    assert rescored["provenance"]["protocol"] == "fit"  # the run's protocol, carried by every exported row

    # Per item: what lm-eval's process_results decided is what `longrm score` reads from the predictions.
    lm_eval_rows = {(r.config, r.item_id, tuple(r.true_ranks)): (r.predicted, r.score)
                    for r in (judged(s["AVG"]) for s in samples)}
    score_rows = {(r.config, r.item_id, tuple(r.true_ranks)): (r.predicted, r.score)
                  for r in read_predictions([str(tmp_path / "preds")])}
    assert score_rows == lm_eval_rows and len(score_rows) == 116


def test_results_json_alone_still_reports(ll_run, tmp_path):
    out, results, _ = ll_run
    [results_file] = list(out.rglob("results_*.json"))
    only = tmp_path / "only"
    only.mkdir()
    (only / results_file.name).write_text(results_file.read_text())
    run = load_lm_eval_run(only)
    task = results["results"]["long_rewardbench_ll_all"]
    assert run.metrics["AVG"] == task["AVG,none"] and run.metrics["Rank Avg"] == task["Rank Avg,none"]
    assert run.metrics["extra"]["truncated"] == 116
    with pytest.raises(InputError, match="--log_samples"):
        export_predictions(only, tmp_path / "none")


def test_not_an_lm_eval_folder(tmp_path):
    assert load_lm_eval_run(tmp_path) is None
    (tmp_path / "results_2024.json").write_text(json.dumps({"results": {"hellaswag": {"acc,none": 0.5}}}))
    assert load_lm_eval_run(tmp_path) is None


# ------------------------------------------------------------------ folders as users leave them


def _copy_run(out: Path, dest: Path, date: str | None = None) -> Path:
    """Copy the fixture's results + samples into ``dest`` (optionally re-stamped with another date)."""
    import shutil

    [results_file] = list(out.rglob("results_*.json"))
    old = results_file.name[len("results_"):-len(".json")]
    dest.mkdir(parents=True, exist_ok=True)
    for f in results_file.parent.iterdir():
        shutil.copy(f, dest / (f.name.replace(old, date) if date else f.name))
    return dest


def _samples(folder: Path) -> Path:
    [f] = [p for p in folder.glob("samples_long_rewardbench_ll_all_*.jsonl")]
    return f


def test_every_results_file_in_a_folder_is_a_run(ll_run, tmp_path):
    out, _, _ = ll_run
    _copy_run(out, tmp_path / "runs" / "tiny")
    _copy_run(out, tmp_path / "runs" / "tiny", date="2031-01-01T00-00-00.000000")
    runs = load_runs(str(tmp_path / "runs"))
    assert [r.judge for r in runs] == ["ll", "ll"] and len({r.source for r in runs}) == 2
    assert runs[0].metrics["AVG"] == runs[1].metrics["AVG"]
    with pytest.raises(InputError, match="names one run but this path holds 2"):
        load_runs(str(tmp_path / "runs"), name="mine")
    with pytest.raises(InputError, match="pick one results file"):
        load_run(str(tmp_path / "runs"))


def test_items_sharing_an_id_are_all_scored(ll_run, tmp_path):
    out, results, _ = ll_run
    folder = _copy_run(out, tmp_path / "dup")
    lines = _samples(folder).read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    pair = [r for r in rows if r["doc"]["tasktype"] == "PairWise"]
    first, other = pair[0]["doc"], next(r["doc"] for r in pair if r["doc"]["id"] != pair[0]["doc"]["id"]
                                        and r["doc"]["config"] == pair[0]["doc"]["config"])
    victim = other["id"]
    for r in rows:  # the second item takes the first one's id, in both of its presentations
        if r["doc"]["config"] == first["config"] and r["doc"]["id"] == victim:
            r["doc"]["id"] = first["id"]
    _samples(folder).write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(str(folder))
    assert run.metrics["extra"]["presentations"] == 116  # nothing vanished
    assert run.metrics["AVG"] == pytest.approx(results["results"]["long_rewardbench_ll_all"]["AVG,none"], abs=1e-12)
    assert any("shared by more than one item" in w for w in run.warnings)


@pytest.mark.parametrize("damage", ["drop5", "repeat1"])
def test_samples_must_match_lm_evals_count(ll_run, tmp_path, damage):
    out, _, _ = ll_run
    folder = _copy_run(out, tmp_path / damage)
    lines = _samples(folder).read_text().splitlines(keepends=True)
    lines = lines[:-5] if damage == "drop5" else lines + lines[:1]
    _samples(folder).write_text("".join(lines))
    want = "has 111 rows but lm-eval evaluated 116" if damage == "drop5" else "has 117 rows but lm-eval evaluated 116"
    with pytest.raises(InputError, match=want):
        load_runs(str(folder))
    [run] = load_runs(str(folder), use_samples=False)  # the way out the message names: lm-eval's own numbers
    assert "--no-samples" in run.warnings[0]


def test_order_both_results_alone_report_without_crashing(ll_run, tmp_path, capsys):
    """The README's `order: both` run reported from lm-eval's results JSON (no samples): once a KeyError."""
    from longrm_tasks.cli import main

    out, results, _ = ll_run
    [results_file] = list(out.rglob("results_*.json"))
    consistent = results["results"]["long_rewardbench_ll_all"]["extra/consistent_accuracy,none"]
    only = tmp_path / "only"
    only.mkdir()
    (only / results_file.name).write_text(results_file.read_text())
    for args in ([str(only)], [str(results_file), "--no-samples"]):
        assert main(["report", *args, "--markdown", str(tmp_path / "r.md")]) == 0
        shown = capsys.readouterr().out
        assert f"consistent accuracy {100 * consistent:.1f}%" in shown


def test_run_carries_protocol_and_data_provenance(ll_run, capsys):
    from longrm_tasks.cli import main
    from longrm_tasks.data import load_benchmark

    out, _, _ = ll_run
    run = load_run(str(out))
    assert run.protocol == "fit" and run.settings["order"] == "both"
    assert run.provenance is not None and run.provenance.source == "sample"
    assert run.provenance.files == load_benchmark("sample").provenance.files
    assert main(["report", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "protocol fit" in shown and "≠ paper" in shown and "the bundled sample" in shown


# -- exported rows carry what the run decided (protocol, over-long, budget, thinking) -----------------

@pytest.fixture(scope="module")
def rm_run(tmp_path_factory):
    """hf-rm under the paper protocol with a 1,000-token context while the task measured against 1M tokens:
    the reward model finds the over-long items itself (they are only in the logged records, not the docs)."""
    import lm_eval
    import lm_eval.api.registry
    from lm_eval.tasks import TaskManager

    from longrm_tasks.adapters.lm_eval.plugin import register_models

    register_models(lm_eval.api.registry)
    root = tmp_path_factory.mktemp("lm_eval_rm")
    model = save_tiny_model(root / "rm", kind="seq-cls", hidden=16, layers=1, max_positions=4096)
    meta = {"pretrained": str(model), "data_dir": "sample", "max_length": 1 << 20}
    results = lm_eval.simple_evaluate(
        model="hf-rm", model_args={"pretrained": str(model), "max_length": 1000, "progress": False},
        tasks=["long_rewardbench_rm_code"], device="cpu", log_samples=True,
        task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=meta))
    samples = _save_like_output_path(root / "out", results, "tiny-rm")
    return root / "out", results, samples["long_rewardbench_rm_code"]


def test_exported_reward_rows_carry_the_protocol_and_run_time_overlong(rm_run, tmp_path):
    out, results, samples = rm_run
    overlong = [s for s in samples if s["AVG"]["overlong"]]
    assert overlong and not any(s["doc"]["overlong"] for s in samples)  # decided by hf-rm, at run time
    export_predictions(out, tmp_path / "preds")
    rows = [json.loads(line) for f in sorted((tmp_path / "preds").glob("*.jsonl")) for line in f.open()]
    assert len(rows) == len(samples) and all(r["protocol"] == "paper" for r in rows)
    assert sum(r["overlong"] for r in rows) == len(overlong)
    assert all(r["output"] is None for r in rows if r["overlong"])  # not the -inf placeholder scores
    assert all(isinstance(r["output"], list) for r in rows if not r["overlong"])

    rescored = score_files([str(tmp_path / "preds")])
    task = results["results"]["long_rewardbench_rm_code"]
    assert rescored["provenance"]["protocol"] == "paper"
    assert rescored["extra"]["overlong"] == task["extra/overlong,none"] == len(overlong)
    assert rescored["extra"]["unparsed"] == 0
    for key in ("AVG", "PairWise Avg", "Rank Avg", "Code"):
        assert rescored[key] == pytest.approx(task[f"{key},none"], abs=1e-12)
    run = load_lm_eval_run(out)
    assert run.protocol == "paper" and run.metrics["AVG"] == pytest.approx(task["AVG,none"], abs=1e-12)


def _generative_sample(item_id="q1", **doc_fields):
    doc = {"key": f"LongQA/{item_id}", "config": "LongQA", "id": item_id, "tasktype": "PairWise", "subtype": "same",
           "length": "128k", "order": [1, 0], "judge": "generative", "parser": "reference", "orders": "paper",
           "protocol": "paper", "presentation": 0, "truncated_tokens": 0, "skipped": False, "overlong": False}
    doc.update(doc_fields)
    record = {"config": "LongQA", "id": item_id, "tasktype": "PairWise", "subtype": "same", "length": "128k",
              "order": [1, 0], "predicted": [1, 0], "truncated_tokens": 0, "skipped": False,
              "overlong": doc["overlong"], "short_budget": True, "thinking": True}
    return {"doc_id": 0, "doc": doc, "filtered_resps": ["<think>A?</think> [[B]]"], "AVG": record}


def test_prediction_row_carries_budget_thinking_and_treats_overlong_output_as_unparsed(tmp_path):
    from longrm_tasks.report.lm_eval_runs import prediction_row

    row = prediction_row(_generative_sample())
    assert row["output"] == "<think>A?</think> [[B]]" and row["protocol"] == "paper"
    assert row["short_budget"] is True and row["thinking"] is True and row["overlong"] is False

    over = _generative_sample("q2", overlong=True)
    over["filtered_resps"] = ["["]  # the 1-token placeholder generation of an over-long prompt
    row = prediction_row(over)
    assert row["output"] is None and row["overlong"] is True

    path = tmp_path / "LongQA.jsonl"
    path.write_text(json.dumps(prediction_row(_generative_sample())) + "\n" + json.dumps(row) + "\n")
    scored = score_files([str(path)])
    assert scored["provenance"]["protocol"] == "paper"
    assert scored["extra"]["short_budget"] == 2 and scored["extra"]["thinking_outputs"] == 2
    assert scored["extra"]["overlong"] == 1 and scored["extra"]["unparsed"] == 0

    bad = _generative_sample()
    bad["AVG"]["thinking"] = "yes"
    with pytest.raises(InputError, match="field 'AVG.thinking': expected true or false"):
        prediction_row(bad, path="samples.jsonl", line=3)
