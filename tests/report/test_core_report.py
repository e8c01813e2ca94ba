"""`longrm report`: tables, Markdown, JSON summary and a real PNG from score JSONs."""
import json

from longrm_tasks.cli import main


def _score_json(tmp_path, name, verdict, file=None):
    rows = []
    for i, length in enumerate(["4k", "8k", "16k", "32k"]):
        rows.append(dict(output=verdict, shuffled_order=[0, 1] if i % 2 else [1, 0], subset="LongQA",
                         tasktype="PairWise", subtype="same", ctx_length=length, id=str(i)))
    rows.append(dict(output="[[B>A>C]]", shuffled_order=[1, 0, 2], subset="Summ", tasktype="BestOfN",
                     subtype=3, ctx_length="4k", id="b"))
    file = file or name
    preds = tmp_path / f"{file}.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"{file}.json"
    assert main(["score", "--predictions", str(preds), "--json", str(out), "--name", name, "--quiet"]) == 0
    return out


def test_report_writes_all_outputs(tmp_path, capsys):
    a, b = _score_json(tmp_path, "judge-a", "[[A]]"), _score_json(tmp_path, "judge-b", "[[B]]")
    md, js, png = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "r.png"
    assert main(["report", str(a), f"renamed={b}", "--markdown", str(md), "--json", str(js), "--plot", str(png)]) == 0
    shown = capsys.readouterr().out
    assert "judge-a" in shown and "renamed" in shown and "Length Avg" in shown
    text = md.read_text()
    assert "| judge-a | 50.0 |" in text and "| — |" in text  # empty configs are dashes, not 0
    assert "### Provenance" in text
    summary = json.loads(js.read_text())
    assert [r["model"] for r in summary["runs"]] == ["judge-a", "renamed"]
    assert summary["runs"][0]["metrics"]["PairWise Avg"] == 0.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file behind


def test_report_rejects_unknown_files(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    assert main(["report", str(bad)]) == 2
    assert "AVG" in capsys.readouterr().err


# ------------------------------------------------------------------ reading at 80 columns, units, labels

import re  # noqa: E402

import pytest  # noqa: E402

from longrm_tasks.report.layout import Run  # noqa: E402
from longrm_tasks.report.names import label, short_model, unique_labels  # noqa: E402
from longrm_tasks.report.table import print_report  # noqa: E402

LONG = "/mnt/shared/checkpoints/experiments/2026-11-30/qwen3-8b-longrm-stage2-alignment-final"


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+\.\d", text)


def test_path_named_run_shows_every_number_at_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    a = _score_json(tmp_path, LONG, "[[A]]", file="long")
    assert main(["report", str(a)]) == 0
    shown = capsys.readouterr().out
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert "…" not in "".join(line for line in shown.splitlines() if line.startswith("Run"))  # headers whole
    # every number of the three tables is printed whole: LongQA, AVG; Same, PairWise Avg, Rank3, Rank Avg;
    # four length buckets (the other cells are empty: dashes)
    tables = shown.split("Provenance")[0]
    assert _numbers(tables) == ["50.0", "60.0", "50.0", "50.0", "100.0", "100.0", "0.0", "100.0", "0.0", "100.0"]
    assert "qwen3-8b-long…lignment-final" in tables


def test_labels_short_unique_and_per_judge():
    assert short_model("Qwen/Qwen3-8B") == "Qwen3-8B" and short_model("/a/b/ckpt/") == "ckpt"
    assert short_model("__mnt__ckpt__tiny") == "tiny"  # lm-eval's sanitized model name
    assert label("Qwen/Qwen3-8B", "gen") != label("Qwen/Qwen3-8B", "ll")
    assert len(label(LONG, "gen")) <= 28 and label(LONG, "gen").endswith("final [gen]")
    assert unique_labels(["m [gen]", "m [gen]"], ["paper", "fit"]) == ["m [gen] paper", "m [gen] fit"]
    assert unique_labels(["m", "m", "x"], [None, None, None]) == ["m", "m #2", "x"]


def test_units_counts_rates_and_empty_slices(capsys):
    unparsed = Run("random", {"AVG": 0.0, "LongQA": 0.0, "4k": 0.0, "extra": {
        "presentations": 4, "items": 4, "unparsed": 4, "unparsed_rate": 1.0, "unparsed_rate_pairwise": 1.0,
        "position_a_rate": 0.0, "truncated": 2, "truncated_tokens": 1234, "skipped": 0,
        "counts": {"PairWise Avg": 4, "LongQA": 4, "Summ": 0, "4k": 4, "8k": 0, "AVG": 4}}})
    print_report([unparsed])
    shown = capsys.readouterr().out
    assert "picked position A" not in shown  # no pair was parsed: no rate of it
    assert "unparsed 4 of 4 (100.0%)" in shown and "prompts cut 2, tokens cut 1,234" in shown
    row = next(line for line in shown.splitlines() if line.startswith("random") and "unp." in line)
    assert "0.0" not in row and "—" in row  # no verdict is not 0 % accuracy; an empty slice is a dash


# ------------------------------------------------------------------ outputs: validated first, atomic


def test_bad_output_paths_fail_before_reading(tmp_path, capsys):
    a = _score_json(tmp_path, "judge-a", "[[A]]")
    missing_run = str(tmp_path / "not-there.json")
    (tmp_path / "afile").write_text("x")
    for args in (["--plot", str(tmp_path / "x.txt")], ["--json", str(tmp_path / "afile" / "r.json")],
                 ["--markdown", str(tmp_path)]):
        assert main(["report", missing_run, *args]) == 2  # the output is checked before the run is read
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "not-there" not in err
    assert main(["report", str(a), "--plot", str(tmp_path / "x.txt")]) == 2
    assert ".png" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ['"high"', "true", "1.5", "NaN"])
def test_score_json_with_a_non_number_is_one_clear_error(tmp_path, capsys, bad):
    a = _score_json(tmp_path, "judge-a", "[[A]]")
    text = a.read_text().replace('"LongQA": 0.5', f'"LongQA": {bad}', 1)
    assert text != a.read_text()
    a.write_text(text)
    assert main(["report", str(a)]) == 2
    err = capsys.readouterr().err
    assert "LongQA" in err and "number" in err and len(err.strip().splitlines()) == 1


def test_plot_formats_and_overlay(tmp_path):
    a, b = _score_json(tmp_path, "judge-a", "[[A]]"), _score_json(tmp_path, "judge-b", "[[B]]")
    for suffix, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml")):
        out = tmp_path / f"p{suffix}"
        assert main(["report", str(a), str(b), "--plot", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    svg = (tmp_path / "p.svg").read_text()
    assert "judge-a" in svg and "judge-b" in svg and "n=1" in svg and "chance" in svg


def test_wilson_interval_and_points():
    from longrm_tasks.report.plot import all_unparsed, length_points, wilson_interval

    lo, hi = wilson_interval(7, 10)
    assert lo == pytest.approx(0.3968, abs=1e-4) and hi == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 1)[0] == 0.0 and wilson_interval(1, 1)[1] == 1.0
    run = Run("r", {"4k": 0.5, "8k": 0.0, "extra": {"counts": {"4k": 2, "8k": 0}, "unparsed_rate_pairwise": 0.0,
                                                   "presentations": 2}})
    [(i, value, n, (low, high))] = length_points(run)  # the empty 8k bucket is a gap, not 0 %
    assert (i, value, n) == (0, 50.0, 2) and 0 < low < 50 < high < 100
    assert not all_unparsed(run)


@pytest.mark.parametrize("make", ["empty-file", "list-json", "missing", "empty-name", "empty-folder", "bad-samples"])
def test_bad_runs_are_one_line_errors(tmp_path, capsys, make):
    target = tmp_path / "run.json"
    arg = str(target)
    if make == "empty-file":
        target.write_text("")
    elif make == "list-json":
        target.write_text("[1, 2]")
    elif make == "empty-name":
        arg = "mine="
    elif make == "empty-folder":
        arg = str(tmp_path)
    elif make == "bad-samples":  # an lm-eval results file whose samples file has a broken line
        date = "2026-01-01T00-00-00.000000"
        (tmp_path / f"results_{date}.json").write_text(json.dumps(
            {"results": {"long_rewardbench_all": {"AVG,none": 0.5}}, "configs": {}, "model_name": "m"}))
        (tmp_path / f"samples_long_rewardbench_all_{date}.jsonl").write_text('{"doc": \n')
        arg = str(tmp_path)
    assert main(["report", arg]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if make == "bad-samples":
        assert "samples_long_rewardbench_all" in err and ":1:" in err
