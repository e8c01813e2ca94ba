"""Bad input -> exit code != 0 and one line naming file:line and field, never a traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longrm_tasks.data.synthetic import generate_config

from project import ROOT  # noqa: E402


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "longrm_tasks.cli", *args], capture_output=True, text=True, env=env)


def _good_records():
    return list(generate_config("LongQA", 2, 2, context_words={b: 30 for b in ("4k", "8k", "16k", "32k", "64k", "128k")}))


def _write_data(folder: Path, records, raw_line: bytes | None = None, at: int = 2):
    folder.mkdir(exist_ok=True)
    lines = [json.dumps(r).encode() for r in records]
    if raw_line is not None:
        lines.insert(at - 1, raw_line)
    (folder / "LongQA.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder / "LongQA.jsonl"


def _assert_one_line_error(proc, path, line, field=None):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{path}:{line}" in lines[0]
    if field:
        assert f"'{field}'" in lines[0]


def _mutated(index, **changes):
    records = _good_records()
    for key, value in changes.items():
        if value is KeyError:
            records[index].pop(key)
        else:
            records[index][key] = value
    return records


@pytest.mark.parametrize("changes,line,field", [
    ({"chosen": KeyError}, 1, "chosen"),
    ({"tasktype": "Pointwise"}, 2, "tasktype"),
    ({"candidates": ["only one"], "subtype": "1"}, 3, "candidates"),
    ({"prompt_template": "not a list"}, 4, "prompt_template"),
    ({"ctx_length_for_length": "3k"}, 1, "ctx_length_for_length"),
])
def test_bad_benchmark_records(tmp_path, changes, line, field):
    records = _mutated(line - 1, **changes)
    path = _write_data(tmp_path / "data", records)
    _assert_one_line_error(_cli("validate", "--data", str(path.parent)), path, line, field)


def test_truncated_json_line_in_data(tmp_path):
    path = _write_data(tmp_path / "data", _good_records(), raw_line=b'{"id": "x", "prompt_templ', at=3)
    proc = _cli("validate", "--data", str(path.parent))
    _assert_one_line_error(proc, path, 3)
    assert "invalid JSON" in proc.stderr


def test_non_utf8_bytes_in_data(tmp_path):
    bad = json.dumps(_good_records()[0]).encode().replace(b"LongQA", b"Long\xff\xfeQA")
    path = _write_data(tmp_path / "data", _good_records()[1:], raw_line=bad, at=2)
    proc = _cli("validate", "--data", str(path.parent))
    _assert_one_line_error(proc, path, 2)
    assert "UTF-8" in proc.stderr


def test_missing_config_file_names_the_path(tmp_path):
    folder = tmp_path / "data"
    _write_data(folder, _good_records())
    proc = _cli("validate", "--data", str(folder), "--configs", "Summ")
    assert proc.returncode != 0 and "Summ.jsonl" in proc.stderr and "Traceback" not in proc.stderr


PRED = dict(output="[[A]]", shuffled_order=[1, 0], subset="LongQA", tasktype="PairWise", subtype="same", ctx_length="4k")


@pytest.mark.parametrize("changes,field", [
    ({"output": KeyError}, "output"),
    ({"tasktype": "Ranking"}, "tasktype"),
    ({"tasktype": "BestOfN", "shuffled_order": [0], "subtype": 1}, "shuffled_order"),
    ({"shuffled_order": [0, 0]}, "shuffled_order"),
    ({"output": [1.0, 2.0, 3.0]}, "output"),
    ({"ctx_length": "5k"}, "ctx_length"),
])
def test_bad_prediction_rows(tmp_path, changes, field):
    bad = dict(PRED)
    for k, v in changes.items():
        if v is KeyError:
            bad.pop(k)
        else:
            bad[k] = v
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps(PRED) + "\n" + json.dumps(bad) + "\n")
    _assert_one_line_error(_cli("score", "--predictions", str(path), "--quiet"), path, 2, field)


def test_truncated_and_non_utf8_prediction_lines(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_bytes(json.dumps(PRED).encode() + b"\n" + b'{"output": "[[A]]", "shuff\n')
    _assert_one_line_error(_cli("score", "--predictions", str(path), "--quiet"), path, 2)
    path.write_bytes(json.dumps(PRED).encode().replace(b"[[A]]", b"[[A]] \xc3\x28") + b"\n")
    _assert_one_line_error(_cli("score", "--predictions", str(path), "--quiet"), path, 1)


def test_missing_prediction_file(tmp_path):
    proc = _cli("score", "--predictions", str(tmp_path / "nope.jsonl"))
    assert proc.returncode != 0 and "nope.jsonl" in proc.stderr and "Traceback" not in proc.stderr
