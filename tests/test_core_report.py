"""`longrm report`: tables, Markdown, JSON summary and a real PNG from score JSONs."""
import json

from longrm_tasks.cli import main


def _score_json(tmp_path, name, verdict):
    rows = []
    for i, length in enumerate(["4k", "8k", "16k", "32k"]):
        rows.append(dict(output=verdict, shuffled_order=[0, 1] if i % 2 else [1, 0], subset="LongQA",
                         tasktype="PairWise", subtype="same", ctx_length=length, id=str(i)))
    rows.append(dict(output="[[B>A>C]]", shuffled_order=[1, 0, 2], subset="Summ", tasktype="BestOfN",
                     subtype=3, ctx_length="4k", id="b"))
    preds = tmp_path / f"{name}.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"{name}.json"
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
    summary = json.loads(js.read_text())
    assert [r["model"] for r in summary["runs"]] == ["judge-a", "renamed"]
    assert summary["runs"][0]["metrics"]["PairWise Avg"] == 0.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_rejects_unknown_files(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    assert main(["report", str(bad)]) == 2
    assert "AVG" in capsys.readouterr().err
