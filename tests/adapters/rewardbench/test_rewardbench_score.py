"""`longrm rewardbench score`: RewardBench's rules and results layout, and the paper metrics beside them.

Outside the isolated RewardBench environment, RewardBench's rules are checked
against faithful transcriptions of its code (below, with the file each comes
from); tests/adapters/rewardbench/test_rewardbench_isolated_env.py runs RewardBench's own functions.
"""
import json
import math
import random

import numpy as np
import pytest

from longrm_tasks.adapters.rewardbench.export import RB1_FILE, RB2_FILE
from longrm_tasks.adapters.rewardbench.score import rewardbench1_result, rewardbench2_result
from longrm_tasks.cli import main
from longrm_tasks.commands.score import score_files


def rb1_transcribed(chosen, rejected):
    # rewardbench/rewardbench.py (0.1.4) `rewardbench()` and scripts/run_rm.py:
    #   results.append(1) if chosen > rejected else results.append(0)
    return 1 if chosen > rejected else 0


def rb2_transcribed(scores):
    # rewardbench/utils.py (0.1.4) `reroll_and_score_dataset`, `scores` a Python list (chosen first):
    #   max_val = np.max(scores)
    #   new_row["results"] = (1 / np.sum(scores == max_val)) if scores[0] == max_val else 0
    max_val = np.max(scores)
    return (1 / np.sum(scores == max_val)) if scores[0] == max_val else 0


def _random_scores(rng, n):
    # few distinct values so ties are frequent; now and then a NaN
    return [math.nan if rng.random() < 0.03 else float(rng.randint(0, 3)) for _ in range(n)]


def test_rules_equal_rewardbench_transcriptions():
    rng = random.Random(0)
    for _ in range(3000):
        n = rng.choice([2, 2, 3, 4])
        scores = _random_scores(rng, n)
        assert rewardbench2_result(scores) == pytest.approx(float(rb2_transcribed(scores)), abs=0)
        assert rewardbench1_result(scores[0], scores[1]) == rb1_transcribed(scores[0], scores[1])
    assert rewardbench2_result([1.0, 1.0, 0.0]) == 0.5  # a tie at the top earns a share, not 0
    assert rewardbench1_result(1.0, 1.0) == 0  # a tied pair is wrong


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(out)]) == 0
    rb1 = [json.loads(line) for line in open(out / RB1_FILE)]
    rb2 = [json.loads(line) for line in open(out / RB2_FILE)]
    rng = random.Random(1)
    scores = {r["id"]: _random_scores(rng, 2 if r in rb1 else r["total_completions"]) for r in rb1 + rb2}
    return out, rb1, rb2, scores


def _expected(rb1, rb2, scores):
    per = {}
    for r in rb1:
        per.setdefault(r["subset"], []).append(rb1_transcribed(*scores[r["id"]]))
    for r in rb2:
        per.setdefault(r["subset"], []).append(float(rb2_transcribed(scores[r["id"]])))
    return {k: sum(v) / len(v) for k, v in per.items()}


def _meta(r):
    return {k: r[k] for k in ("config", "tasktype", "subtype", "ctx_length", "source_id", "paper_order")}


def _write_rewardbench_outputs(tmp_path, rb1, rb2, scores):
    """What RewardBench writes: the CLI's {model}_outputs.jsonl (pairs, with the exported metadata
    columns) and run_v2's column-oriented eval-set-scores/{model}.json (best-of-N)."""
    cli = tmp_path / "m_outputs.jsonl"
    with open(cli, "w") as fh:
        for r in rb1:
            c, j = scores[r["id"]]
            fh.write(json.dumps({"prompt": "p", "results": rb1_transcribed(c, j), "scores_chosen": c,
                                 "scores_rejected": j, "text_chosen": "t", "text_rejected": "t",
                                 "id": r["id"], "subset": r["subset"], **_meta(r)}) + "\n")
    v2 = tmp_path / "m.json"
    cols = {"text": [["t"] * r["total_completions"] for r in rb2], "subset": [r["subset"] for r in rb2],
            "id": [r["id"] for r in rb2], "scores": [scores[r["id"]] for r in rb2],
            "results": [float(rb2_transcribed(scores[r["id"]])) for r in rb2], "num_correct": [1] * len(rb2),
            "model": "org/m", "model_type": "Seq. Classifier", "chat_template": "tokenizer"}
    v2.write_text(json.dumps(cols, indent=4, sort_keys=True))
    return cli, v2


def _write_predictions(tmp_path, rb1, rb2, scores):
    """The same scores as our prediction rows: shown in the paper order, ``output`` = scores as shown."""
    path = tmp_path / "pred.jsonl"
    with open(path, "w") as fh:
        for r in rb1 + rb2:
            order = r["paper_order"]
            fh.write(json.dumps({"output": [scores[r["id"]][o] for o in order], "shuffled_order": order,
                                 "subset": r["config"], "tasktype": r["tasktype"], "subtype": r["subtype"],
                                 "ctx_length": r["ctx_length"], "id": r["source_id"]}) + "\n")
    return path


def test_rewardbench_outputs_give_its_numbers_and_layout_and_the_paper_metrics(exported, tmp_path, capsys):
    out, rb1, rb2, scores = exported
    cli, v2 = _write_rewardbench_outputs(tmp_path, rb1, rb2, scores)
    res, paper = tmp_path / "results.json", tmp_path / "paper.json"
    # run_v2 keeps no metadata columns: --export supplies them by id
    assert main(["rewardbench", "score", "--scores", str(cli), str(v2), "--export", str(out), "--json", str(res),
                 "--paper-json", str(paper)]) == 0
    text = res.read_text()
    got = json.loads(text)
    assert text.rstrip("\n") == json.dumps(got, indent=4, sort_keys=True)  # save_to_hub's layout
    assert {k: got.pop(k) for k in ("model", "model_type", "chat_template")} == {
        "model": "org/m", "model_type": "Seq. Classifier", "chat_template": "tokenizer"}
    expected = _expected(rb1, rb2, scores)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], abs=1e-12)
    # the paper's metrics from the same scores equal `longrm score` on prediction rows in paper order
    reference = score_files([str(_write_predictions(tmp_path, rb1, rb2, scores))])
    ours = json.loads(paper.read_text())
    for key in ("AVG", "PairWise Avg", "Rank Avg", "Same", "Diff", "Rank2", "Rank3", "Rank4", "LongQA", "4k"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12)
    assert ours["extra"]["bestofn_exact_match"] == pytest.approx(reference["extra"]["bestofn_exact_match"])
    assert "RewardBench rules" in capsys.readouterr().out


def test_prediction_files_score_like_rewardbench_outputs(exported, tmp_path):
    out, rb1, rb2, scores = exported
    pred = _write_predictions(tmp_path, rb1, rb2, scores)
    res = tmp_path / "r.json"
    assert main(["rewardbench", "score", "--scores", str(pred), "--json", str(res), "--model", "x", "--quiet"]) == 0
    got = json.loads(res.read_text())
    expected = _expected(rb1, rb2, scores)
    assert {k: v for k, v in got.items() if k in expected} == pytest.approx(expected, abs=1e-12)
    assert got["model"] == "x" and got["model_type"] == "Seq. Classifier"


def test_save_all_rows_are_matched_to_the_export_by_position(exported, tmp_path, capsys):
    out, rb1, rb2, scores = exported
    all_rows = tmp_path / "m_all.jsonl"
    all_rows.write_text("".join(json.dumps(dict(zip(("chosen", "rejected"), scores[r["id"]]))) + "\n"
                                for r in rb1))
    res = tmp_path / "r.json"
    assert main(["rewardbench", "score", "--scores", str(all_rows), "--export", str(out), "--json", str(res)]) == 0
    got = json.loads(res.read_text())
    expected = {k: v for k, v in _expected(rb1, [], scores).items()}
    assert {k: v for k, v in got.items() if k in expected} == pytest.approx(expected, abs=1e-12)
    assert len(got) == len(expected) + 3
    printed = capsys.readouterr().out
    assert f"{len(rb2)} exported items have no score" in printed  # nothing missing goes unsaid
    # RewardBench --debug keeps 10 rows: refuse to guess the alignment
    all_rows.write_text("".join(json.dumps({"chosen": 1.0, "rejected": 0.0}) + "\n" for _ in range(10)))
    assert main(["rewardbench", "score", "--scores", str(all_rows), "--export", str(out)]) == 2
    assert "matched by position" in capsys.readouterr().err


def test_without_metadata_only_rewardbench_numbers(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"id": "a", "subset": "S", "scores_chosen": 2.0, "scores_rejected": 1.0}) + "\n"
                    + json.dumps({"id": "b", "subset": "S", "scores_chosen": 1.0, "scores_rejected": 1.0}) + "\n"
                    + json.dumps({"id": "c", "subset": "T/bon-3", "scores": [1.0, 1.0, 0.0], "num_correct": 1}) + "\n")
    res = tmp_path / "r.json"
    assert main(["rewardbench", "score", "--scores", str(path), "--json", str(res)]) == 0
    assert json.loads(res.read_text()) == {"model": "s", "model_type": "Seq. Classifier", "chat_template": "tokenizer",
                                           "S": 0.5, "T/bon-3": 0.5}
    assert "paper metrics: not available" in capsys.readouterr().out


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "subset": "S", "scores_chosen": "high", "scores_rejected": 1.0}, "field 'scores_chosen'"),
    ({"id": "a", "subset": "S"}, "no scores"),
    ({"id": "a", "subset": "S", "scores": [1.0, 0.0], "num_correct": 2}, "field 'num_correct'"),
])
def test_bad_scores_are_one_line_exit_2(tmp_path, capsys, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "ok", "subset": "S", "scores_chosen": 1, "scores_rejected": 0}) + "\n"
                    + json.dumps(row) + "\n")
    assert main(["rewardbench", "score", "--scores", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:2" in err and message in err


# -- one model per call, outputs checked up front and written atomically --------------------------

def test_two_models_score_files_are_refused_never_mixed(exported, tmp_path, capsys):
    out, rb1, rb2, scores = exported
    model_a = tmp_path / "a"
    model_b = tmp_path / "b"
    model_a.mkdir(), model_b.mkdir()
    _write_rewardbench_outputs(model_a, rb1, rb2, scores)
    rng = random.Random(7)
    other = {k: _random_scores(rng, len(v)) for k, v in scores.items()}
    _write_rewardbench_outputs(model_b, rb1, rb2, other)
    res = tmp_path / "r.json"
    assert main(["rewardbench", "score", "--scores", str(model_a / "m_outputs.jsonl"),
                 str(model_b / "m_outputs.jsonl"), "--export", str(out), "--json", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be mixed" in err and not res.exists()
    # two RewardBench JSONs that name different models
    (model_b / "m.json").write_text((model_b / "m.json").read_text().replace('"org/m"', '"org/other"'))
    assert main(["rewardbench", "score", "--scores", str(model_a / "m.json"), str(model_b / "m.json"),
                 "--export", str(out)]) == 2
    assert "'org/other', but an earlier file holds 'org/m'" in capsys.readouterr().err
    # one model split over two files (pairs + best-of-N) is still one run
    assert main(["rewardbench", "score", "--scores", str(model_a / "m_outputs.jsonl"), str(model_a / "m.json"),
                 "--export", str(out), "--quiet"]) == 0


def test_a_repeated_rewardbench_row_counts_once_for_the_paper_metrics_too(exported, tmp_path):
    out, rb1, rb2, scores = exported
    cli, v2 = _write_rewardbench_outputs(tmp_path, rb1, rb2, scores)
    base, dup = tmp_path / "base.json", tmp_path / "dup.json"
    assert main(["rewardbench", "score", "--scores", str(cli), str(v2), "--export", str(out),
                 "--paper-json", str(base), "--quiet"]) == 0
    with open(cli, "a") as fh:
        fh.write(cli.read_text().splitlines()[0] + "\n")
    assert main(["rewardbench", "score", "--scores", str(cli), str(v2), "--export", str(out),
                 "--paper-json", str(dup), "--quiet"]) == 0
    assert json.loads(dup.read_text()) == json.loads(base.read_text())


@pytest.mark.parametrize("bad", ["folder", "under_file", "missing_parent"])
def test_output_paths_are_checked_before_anything_is_read(tmp_path, capsys, bad):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = {"folder": tmp_path, "under_file": blocker / "r.json",
              "missing_parent": tmp_path / "nowhere" / "r.json"}[bad]
    # the scores file does not even exist: the output path is what gets reported
    assert main(["rewardbench", "score", "--scores", str(tmp_path / "absent.jsonl"), "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "field '--json'" in err


def test_paper_json_without_metadata_is_an_error_not_a_missing_file(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"id": "a", "subset": "S", "scores_chosen": 2.0, "scores_rejected": 1.0}) + "\n")
    paper = tmp_path / "paper.json"
    assert main(["rewardbench", "score", "--scores", str(path), "--paper-json", str(paper)]) == 2
    assert "no paper metrics to write" in capsys.readouterr().err and not paper.exists()
