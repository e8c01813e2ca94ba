"""`longrm validate` looks across records (duplicate ids) and reports what the loader finds."""
import json

from longrm_tasks.cli import main
from longrm_tasks.data.synthetic import generate_config


def _records():
    return list(generate_config("LongQA", 2, 1, context_words={b: 20 for b in ("4k", "8k", "16k", "32k")}))


def _folder(tmp_path, records, name="LongQA.jsonl"):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_duplicate_ids_are_warned_and_strict_fails(tmp_path, capsys):
    records = _records()
    records[2]["id"] = records[0]["id"]
    folder = _folder(tmp_path, records)
    assert main(["validate", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "1 warnings" in out and repr(records[0]["id"]) in out and "records 1, 3" in out
    assert main(["validate", "--data", str(folder), "--strict"]) == 1


def test_unique_ids_pass_strict_and_files_are_fingerprinted(tmp_path, capsys):
    import hashlib

    folder = _folder(tmp_path, _records())
    assert main(["validate", "--data", str(folder), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "0 warnings" in out
    assert hashlib.sha256((folder / "LongQA.jsonl").read_bytes()).hexdigest()[:12] in out


def test_empty_config_file_is_not_silently_valid(tmp_path, capsys):
    folder = _folder(tmp_path, _records())
    (folder / "Summ.jsonl").write_text("")
    code = main(["validate", "--data", str(folder), "--strict"])
    captured = capsys.readouterr()
    assert code != 0 and "Summ.jsonl" in captured.out + captured.err


def test_misnamed_files_are_reported(tmp_path, capsys):
    folder = _folder(tmp_path, _records())
    _folder(tmp_path, _records(), "summ.jsonl")
    code = main(["validate", "--data", str(folder), "--strict"])
    captured = capsys.readouterr()
    assert code != 0 and "summ.jsonl" in captured.out + captured.err
