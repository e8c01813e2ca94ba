"""`longrm rewardbench export`: RewardBench 1/2 records, every PairWise/BestOfN item exactly once."""
import json
import shutil
from collections import Counter

import pytest

from longrm_tasks.adapters.rewardbench.export import (
    RB1_FILE, RB2_FILE, check_rewardbench1, check_rewardbench2, export_items, read_export, rewardbench_id,
    rewardbench_messages,
)
from longrm_tasks.cli import main
from longrm_tasks.data import load_benchmark
from longrm_tasks.data.loading import SAMPLE_DIR
from longrm_tasks.errors import InputError


@pytest.fixture(scope="module")
def sample():
    return load_benchmark("sample").items


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_every_item_exactly_once_with_the_right_answers(sample, tmp_path):
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(tmp_path)]) == 0
    rb1, rb2 = _rows(tmp_path / RB1_FILE), _rows(tmp_path / RB2_FILE)
    by_id = {rewardbench_id(it): it for it in sample}
    assert len(by_id) == len(sample)
    exported = Counter(r["id"] for r in rb1 + rb2)
    assert exported == Counter(list(by_id))  # each item once, nothing else
    assert {r["id"] for r in rb1} == {k for k, it in by_id.items() if it.tasktype == "PairWise"}
    for line, rec in enumerate(rb1, 1):
        check_rewardbench1(rec, path="rb1", line=line)
        it = by_id[rec["id"]]
        assert rec["chosen"][-1] == {"role": "assistant", "content": it.answers[0]}
        assert rec["rejected"][-1] == {"role": "assistant", "content": it.answers[1]}
        # the long context survives whole: the judge question is the (only) user turn
        assert rec["chosen"][:-1] == [{"role": "user", "content": it.judge_question}]
        assert rec["prompt"] == it.judge_question
        assert rec["subset"] == it.config
        assert (rec["tasktype"], rec["subtype"], rec["ctx_length"], rec["paper_order"]) == (
            "PairWise", it.subtype, it.length, it.paper_order)
    for line, rec in enumerate(rb2, 1):
        check_rewardbench2(rec, path="rb2", line=line)
        it = by_id[rec["id"]]
        assert rec["chosen"] == it.answers[:1] and rec["rejected"] == it.answers[1:]
        assert (rec["num_correct"], rec["total_completions"]) == (1, it.n)
        assert rec["subset"] == f"{it.config}/bon-{it.n}"
        assert rec["prompt"] == it.judge_question
        assert "question" not in rec and "input" not in rec
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["items"] == len(sample) == sum(manifest["counts"].values())


def test_selection_replaces_stale_files(tmp_path):
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(tmp_path)]) == 0
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(tmp_path), "--configs", "Summ",
                 "--tasktypes", "BestOfN", "--lengths", "4k,8k,16k,32k,64k,128k"]) == 0
    assert not (tmp_path / RB1_FILE).exists()
    items = [it for it in load_benchmark("sample", configs=["Summ"]).items if it.tasktype == "BestOfN"]
    assert sorted(r["id"] for r in _rows(tmp_path / RB2_FILE)) == sorted(rewardbench_id(it) for it in items)
    assert set(read_export(tmp_path)) == {"rewardbench2"}


def test_repeated_source_ids_are_made_unique(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = (SAMPLE_DIR / "Math.jsonl").read_text(encoding="utf-8").splitlines()
    (data / "Math.jsonl").write_text("\n".join(lines + lines[:1]) + "\n", encoding="utf-8")
    items = load_benchmark(str(data)).items
    summary = export_items(items, tmp_path / "out")
    ids = [r["id"] for r in _rows(tmp_path / "out" / RB1_FILE)]
    assert len(ids) == len(set(ids)) == len(items) == len(lines) + 1
    assert len(summary.renamed_ids) == 2 and all("@" in i for i in summary.renamed_ids)


@pytest.mark.parametrize("messages, expected", [
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], [("user", "S\n\nU")]),
    ([{"role": "user", "content": "U"}], [("user", "U")]),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A"},
      {"role": "user", "content": "U2"}], [("user", "S\n\nU1"), ("assistant", "A"), ("user", "U2")]),
    ([{"role": "user", "content": "U1"}, {"role": "user", "content": "U2"}], [("user", "U1\n\nU2")]),
    # cannot alternate from a user turn to a user turn: one user turn with everything, in order
    ([{"role": "assistant", "content": "A"}, {"role": "user", "content": "U"}], [("user", "A\n\nU")]),
    ([{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}], [("user", "U\n\nA")]),
])
def test_prompt_turns_fit_rewardbench_alternation(messages, expected):
    assert [(m["role"], m["content"]) for m in rewardbench_messages(messages)] == expected


def test_schema_checks_reject_what_rewardbench_cannot_load(sample):
    pair = next(it for it in sample if it.tasktype == "PairWise")
    from longrm_tasks.adapters.rewardbench.export import rewardbench1_record, rewardbench2_record

    good = rewardbench1_record(pair)
    check_rewardbench1(good)
    bad = dict(good, chosen=[{"role": "system", "content": "s"}] + good["chosen"])
    with pytest.raises(InputError, match="alternate"):
        check_rewardbench1(bad, path="f.jsonl", line=3)
    with pytest.raises(InputError, match="renames"):
        check_rewardbench1(dict(good, question="q"))
    with pytest.raises(InputError, match="share the prompt"):
        check_rewardbench1(dict(good, rejected=[{"role": "user", "content": "x"}, good["rejected"][-1]]))
    bon = rewardbench2_record(next(it for it in sample if it.tasktype == "BestOfN"))
    check_rewardbench2(bon)
    with pytest.raises(InputError, match="total_completions"):
        check_rewardbench2(dict(bon, total_completions=9))
    with pytest.raises(InputError, match="bon-"):
        check_rewardbench2(dict(bon, subset="Summ"))


def test_export_bad_input_is_one_line_exit_2(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE_DIR / "Math.jsonl", data / "Math.jsonl")
    with open(data / "Math.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"id": "x", "tasktype": "PairWise"\n')
    assert main(["rewardbench", "export", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Math.jsonl:" in err and "invalid JSON" in err


# -- validate before destroy: bad selections never touch the previous export ----------------------

def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def previous(tmp_path):
    out = tmp_path / "export"
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(out)]) == 0
    return out, _snapshot(out)


@pytest.mark.parametrize("option, value, message", [
    ("--tasktypes", "pairwise", "did you mean 'PairWise'?"),
    ("--lengths", "4K", "did you mean '4k'?"),
    ("--subtypes", "Same", "did you mean 'same'?"),
    ("--configs", "longqa", "did you mean 'LongQA'?"),
    ("--tasktypes", ",", "empty list of values"),
])
def test_unknown_filter_values_are_one_line_naming_the_closest(previous, capsys, option, value, message):
    out, before = previous
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"field '{option}'" in err and message in err
    assert _snapshot(out) == before


def test_a_selection_matching_nothing_is_an_error_and_keeps_the_previous_export(previous, capsys):
    out, before = previous
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(out),
                 "--configs", "Math", "--tasktypes", "BestOfN"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no items match --configs Math, --tasktypes BestOfN" in err
    assert _snapshot(out) == before
    with pytest.raises(InputError, match="no items to export"):
        export_items([], out)
    assert _snapshot(out) == before


def test_a_failed_write_leaves_the_previous_export_whole(previous, sample, monkeypatch):
    """Fault injection: the disk fills up while the manifest (the last file) is written."""
    import errno

    import longrm_tasks.atomic

    out, before = previous

    def disk_full(path, obj, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(longrm_tasks.atomic, "write_json", disk_full)
    with pytest.raises(OSError):
        export_items([it for it in sample if it.config == "Math"], out)
    assert _snapshot(out) == before  # no new file swapped in, no staging folder left behind


def test_out_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err and target.read_text() == "keep me"
