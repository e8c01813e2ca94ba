"""The paper's published numbers as data, `longrm report --compare paper`, and provenance marks."""
from __future__ import annotations

import json

from longrm_tasks.cli import main
from longrm_tasks.data.provenance import Provenance
from longrm_tasks.report.comparability import standings
from longrm_tasks.report.layout import Run
from longrm_tasks.report.paper import RB_COLUMNS, TABLE1_COLUMNS, TABLE2_COLUMNS, paper_rows, paper_source


def test_every_row_and_cell_of_tables_1_2_and_6():
    t1, t2, t6 = paper_rows(1), paper_rows(2), paper_rows(6)
    assert (len(t1), len(t2), len(t6)) == (21, 20, 4)
    assert all(list(r.cells) == TABLE1_COLUMNS for r in t1 + t6)
    assert all(list(r.cells) == TABLE2_COLUMNS + RB_COLUMNS for r in t2)
    for rows in (t1, t2, t6):
        assert [r.row for r in rows] == list(range(1, len(rows) + 1))
    assert "2510.06915" in paper_source()
    qwen = next(r for r in t1 if r.model == "Qwen3-8B +Alignment")
    assert (qwen.row, qwen.label, qwen.cells["Math"], qwen.cells["AVG"]) == (21, "+Alignment", 71.7, 43.9)
    assert t1[0].model == "Random" and t1[0].cells["Rank4"] == 4.2 and t1[0].cell("LongQA") == "50.0"
    gemini = next(r for r in t2 if r.model == "Gemini 2.5 Pro")
    assert (gemini.cells["128k"], gemini.cells["Length Avg"], gemini.cells["RB Avg"]) == (80.9, 61.1, 88.1)
    assert next(r for r in t2 if r.label == "+Align" and r.row == 11).model == "Con-J-Qwen2-7B +Alignment"
    assert t6[-1].model == "Skywork-Reward-V2-Llama-3.1-8B +Alignment" and t6[-1].cells["AVG"] == 52.4


def _run(tmp_path, name="judge-x"):
    rows = [dict(output="[[A]]", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="same",
                 ctx_length="4k", id="1"),
            dict(output="[[A]]", shuffled_order=[1, 0], subset="LongQA", tasktype="PairWise", subtype="same",
                 ctx_length="128k", id="2"),
            dict(output="[[B]]", shuffled_order=[1, 0], subset="Math", tasktype="PairWise", subtype="same",
                 ctx_length="128k", id="3")]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "s.json"
    assert main(["score", "--predictions", str(preds), "--json", str(out), "--name", name, "--quiet"]) == 0
    return out


def test_compare_paper_shows_the_paper_rows_beside_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    run = _run(tmp_path)
    md = tmp_path / "r.md"
    assert main(["report", str(run), "--compare", "paper", "--markdown", str(md)]) == 0
    shown = capsys.readouterr().out
    assert max(len(line) for line in shown.splitlines()) <= 80
    qwen = next(line for line in shown.splitlines() if line.startswith("Qwen3-8B +Alignment") and "71.7" in line)
    assert qwen.split()[-1] == "43.9"
    mine = [line for line in shown.splitlines() if line.startswith("judge-x")]
    # config table: LongQA 50.0, Math 100.0, AVG 66.7; length table: 4k 100.0, 128k 50.0, no Length Avg
    assert any(line.split()[1:] == ["50.0", "—", "—", "—", "—", "—", "100.0", "66.7"] for line in mine)
    assert any(line.split()[1:] == ["100.0", "—", "—", "—", "—", "50.0", "—"] for line in mine)
    assert "Gemini 2.5 Pro" in shown and "Skywork-Reward" in shown and "≠ paper" in shown
    text = md.read_text()
    assert "| Qwen3-8B +Alignment | paper T1 row 21 |" in text and "| **judge-x** | this run |" in text


def _prov(source, revision=None, files=None):
    return Provenance(source, revision, files or {"Math.jsonl": "a" * 64})


def test_paper_comparability_marks():
    runs = [Run("hub-pinned", {}, protocol="paper", provenance=_prov("hub", "c" * 40)),
            Run("hub-unpinned", {}, protocol="paper", provenance=_prov("hub")),
            Run("fit", {}, protocol="fit", provenance=_prov("hub", "c" * 40)),
            Run("other-data", {}, protocol="paper", provenance=_prov("hub", "d" * 40, {"Math.jsonl": "b" * 64})),
            Run("sample", {}, protocol="paper", provenance=_prov("sample")),
            Run("unknown", {})]
    marks = {s.run.name: (s.paper_comparable, " · ".join(s.marks)) for s in standings(runs)}
    assert marks["hub-pinned"] == (True, "paper-comparable")
    assert marks["hub-unpinned"][0] and "revision unknown" in marks["hub-unpinned"][1]
    assert marks["fit"] == (False, "≠ paper: protocol fit · protocol differs from hub-pinned")
    assert marks["other-data"] == (True, "paper-comparable · data differs from hub-pinned")
    assert not marks["sample"][0] and "bundled sample" in marks["sample"][1]
    assert marks["unknown"] == (False, "≠ paper: protocol not recorded, data not recorded")
    line = standings(runs)[0].line
    assert "hub @ cccccccccccc" in line and "1 files, digest" in line


def test_a_run_meets_its_own_models_paper_rows():
    from longrm_tasks.report.paper import matching_rows
    from longrm_tasks.report.table import versus_paper

    for t1_row in paper_rows(1)[1:]:  # Table 2 lists Table 1's models (not Random) in the same order
        [_, t2] = matching_rows(t1_row.model)
        assert t2.row == t1_row.row - 1
        assert t2.model.split()[0].split("-")[0] in t1_row.model  # "Llama-3.1-8B-Inst" / "Llama-3.1-8B-Instruct"
    assert [r.model for r in matching_rows("LCM-Lab/Llama-3-OffsetBias-8B")] == ["Llama-3-OffsetBias-8B",
                                                                                 "OffsetBias-8B"]
    assert [r.table for r in matching_rows("Skywork/GRM-Llama3-8B", "rm")] == [6]
    assert matching_rows("my-own-model") == []
    run = Run("q", {"AVG": 0.35, "Length Avg": 0.384}, model="Qwen/Qwen3-8B", judge="gen")
    assert versus_paper(run) == ("vs the paper's Qwen3-8B (T1 row 19 and T2 row 18): AVG 35.0 vs 31.3 (+3.7); "
                                 "Length Avg 38.4 vs 38.4 (+0.0)")
