"""Strict readers: a typo in a predictions or benchmark file is an error naming file:line and field,
never a dropped row, a miscounted cell or invented statistics."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from longrm_tasks.cli import main
from longrm_tasks.data.schema import validate_record
from longrm_tasks.data.synthetic import generate_config
from longrm_tasks.errors import InputError
from longrm_tasks.metrics.benchmark import compute_metrics
from longrm_tasks.verdicts.predictions import read_predictions

from project import ROOT  # noqa: E402
PAIR = dict(output="[[A]]", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="same",
            ctx_length="4k")
BON = dict(output="[[A>B>C]]", shuffled_order=[0, 1, 2], subset="LongQA", tasktype="BestOfN", subtype=3,
           ctx_length="8k")


def _write(tmp_path, rows, name="preds.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _fails(tmp_path, rows, line, field, *needles):
    path = _write(tmp_path, rows)
    with pytest.raises(InputError) as info:
        list(read_predictions([path]))
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field), str(err)
    for needle in needles:
        assert needle in str(err)
    return err


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "no"])
def test_skipped_must_be_a_bool(tmp_path, value):
    _fails(tmp_path, [dict(PAIR, id="a"), dict(PAIR, id="b", skipped=value)], 2, "skipped", "true or false")


@pytest.mark.parametrize("value", [True, "3", 2.5, -1])
def test_truncated_tokens_must_be_a_count(tmp_path, value):
    _fails(tmp_path, [dict(PAIR, truncated_tokens=value)], 1, "truncated_tokens")


def test_bestofn_subtype_must_agree_with_positions(tmp_path):
    _fails(tmp_path, [BON, dict(BON, subtype=4)], 2, "subtype", "disagrees with 3")
    _fails(tmp_path, [dict(BON, subtype="4")], 1, "subtype")
    assert [r.subtype for r in read_predictions([_write(tmp_path, [BON, dict(BON, subtype="3")])])] == ["3", "3"]


def test_empty_prediction_file_is_an_error(tmp_path):
    good = _write(tmp_path, [PAIR], "good.jsonl")
    for content in ("", "\n\n  \n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(content)
        with pytest.raises(InputError, match="empty") as info:
            list(read_predictions([good, empty]))
        assert info.value.path == str(empty)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "longrm_tasks.cli", "score", "--predictions", str(empty)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(empty) in proc.stderr


@pytest.mark.parametrize("scores", [["a", "b"], [1.0, "2"], [True, 0.5], [1.0, float("inf")]])
def test_scores_must_be_numbers(tmp_path, scores):
    _fails(tmp_path, [dict(PAIR, output=[0.1, 0.2]), dict(PAIR, output=scores)], 2, "output", "expected a number")


def test_missing_scores_are_unparsed_not_errors(tmp_path):
    rows = list(read_predictions([_write(tmp_path, [dict(PAIR, output=[None, 1.0], id="x"),
                                                    dict(PAIR, output=[float("nan"), 1.0], id="y")])]))
    assert [r.predicted for r in rows] == [None, None]


def test_repeated_presentation_is_an_error_naming_both_lines(tmp_path):
    rows = [dict(PAIR, id="p1"), dict(PAIR, id="p1", shuffled_order=[1, 0], output="[[B]]"),
            dict(PAIR, id="p2"), dict(PAIR, id="p1")]
    err = _fails(tmp_path, rows, 4, "id", "'p1'", "preds.jsonl:1")
    assert "again" in str(err)
    # The same repeat through the reference evaluator's ``index``, and across two files.
    a = _write(tmp_path, [dict(PAIR, index=7)], "a.jsonl")
    b = _write(tmp_path, [dict(PAIR, index=7)], "b.jsonl")
    with pytest.raises(InputError, match="a.jsonl:1"):
        list(read_predictions([a, b]))


def test_two_items_sharing_an_id_are_an_error(tmp_path):
    _fails(tmp_path, [dict(PAIR, id="x"), dict(PAIR, id="x", shuffled_order=[1, 0], ctx_length="8k")], 2, "id",
           "share one id")


def test_the_same_file_twice_is_an_error(tmp_path):
    path = _write(tmp_path, [PAIR])
    with pytest.raises(InputError, match="given twice"):
        list(read_predictions([tmp_path, path]))


def test_both_orders_statistics_only_from_real_pairs(tmp_path):
    rows = [dict(PAIR, id="p1"), dict(PAIR, id="p1", shuffled_order=[1, 0], output="[[B]]"), dict(PAIR, id="p2")]
    metrics = compute_metrics(read_predictions([_write(tmp_path, rows)]))
    assert metrics["extra"]["both_orders"]["pairs"] == 1
    assert metrics["extra"]["presentations"] == 3 and metrics["extra"]["items"] == 2


def test_null_pairwise_subtype_counts_in_diff_on_both_paths(tmp_path):
    # Re-scoring path: the reference evaluator writes ``subtype: null`` and keeps str(None) = "None".
    rows = [dict(PAIR, subtype=None, id="n"), dict(PAIR, id="s", output="[[B]]")]
    metrics = compute_metrics(read_predictions([_write(tmp_path, rows)]))
    assert metrics["Diff"] == 1.0 and metrics["extra"]["counts"]["Diff"] == 1
    assert metrics["Same"] == 0.0 and metrics["extra"]["counts"]["Same"] == 1
    # Live path: the record loader keeps the same "None" (it used to turn null into "same").
    record = next(r for r in generate_config("LongQA", 1, 1, context_words={"4k": 20})
                  if r["tasktype"] == "PairWise")
    for raw in (dict(record, subtype=None), {k: v for k, v in record.items() if k != "subtype"}):
        item = validate_record(raw, config="LongQA", index=0, path="LongQA.jsonl", line=1)
        assert item.subtype == "None"


def _bon_record():
    return next(r for r in generate_config("LongQA", 1, 1, context_words={"4k": 20}) if r["tasktype"] == "BestOfN")


@pytest.mark.parametrize("models", ["gpt-4o", ["a"], {"a": 1}, [1, 2, 3, 4]])
def test_candidates_model_must_be_a_list_of_names(models):
    record = _bon_record()
    with pytest.raises(InputError) as info:
        validate_record(dict(record, candidates_model=models), config="LongQA", index=0, path="f.jsonl", line=5)
    assert info.value.field == "candidates_model" and info.value.line == 5


def test_candidates_model_list_is_kept():
    record = _bon_record()
    names = [f"m{i}" for i in range(len(record["candidates"]))]
    item = validate_record(dict(record, candidates_model=names), config="LongQA", index=0)
    assert item.answer_models == names


def test_score_json_carries_provenance(tmp_path):
    a = _write(tmp_path, [dict(PAIR, id="1", protocol="paper")], "a.jsonl")
    b = _write(tmp_path, [dict(BON, id="2", protocol="paper")], "b.jsonl")
    out = tmp_path / "score.json"
    assert main(["score", "--predictions", str(a), str(b), "--json", str(out), "--quiet"]) == 0
    prov = json.loads(out.read_text())["provenance"]
    assert prov["protocol"] == "paper" and prov["parser"] == "reference"
    assert prov["predictions"] == [{"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                                   for p in (a, b)]
    c = _write(tmp_path, [dict(PAIR, id="3")], "c.jsonl")
    assert main(["score", "--predictions", str(c), "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["provenance"]["protocol"] == "unknown"
    d = _write(tmp_path, [dict(PAIR, id="4", protocol="fit")], "d.jsonl")
    before = out.read_bytes()
    assert main(["score", "--predictions", str(a), str(d), "--json", str(out), "--quiet"]) == 2  # mixed
    assert out.read_bytes() == before  # validate before destroy


def test_byte_order_mark_and_crlf_lines_are_read(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(dict(PAIR, id="a")).encode() + b"\r\n"
                     + json.dumps(dict(PAIR, id="b")).encode() + b"\r\n")
    assert [r.item_id for r in read_predictions([path])] == ["a", "b"]


def test_score_refuses_to_write_over_its_own_input(tmp_path, capsys):
    path = _write(tmp_path, [PAIR])
    before = path.read_bytes()
    assert main(["score", "--predictions", str(tmp_path), "--json", str(path), "--quiet"]) == 2
    assert "is also an input" in capsys.readouterr().err and path.read_bytes() == before
    out = tmp_path / "score.json"  # beside the predictions, not one of them: fine, twice
    for _ in range(2):
        assert main(["score", "--predictions", str(tmp_path), "--json", str(out), "--quiet"]) == 0
