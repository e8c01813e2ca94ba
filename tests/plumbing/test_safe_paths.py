"""The three path rules of `longrm_tasks.paths` (safe names, contained outputs, regular input files),
the non-finite number check of the JSONL reader, and the one-line exit under plain ``lm_eval``."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from longrm_tasks import errors
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl, non_finite_field
from longrm_tasks.paths import NAME_MAX, check_name, contained, file_problem, name_problem, require_regular_file

from project import ROOT  # noqa: E402


@pytest.mark.parametrize("name", ["sft", "alignment", "stage_2", "a.b-c+d=e", "Qwen3-8B", "x" * NAME_MAX, "_x"])
def test_safe_names_pass(name):
    assert name_problem(name) is None and check_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "is empty"), ("..", "names a folder"), (".", "names a folder"), ("../x", "path separator"),
    ("../../escaped_sft", "path separator"), ("/abs", "path separator"), ("a/b", "path separator"),
    ("a\\b", "path separator"), ("a\x00b", "NUL"), ("x" * (NAME_MAX + 1), "characters long"),
    (".hidden", "not allowed"), ("-rf", "not allowed"), ("a b", "not allowed"), ("a\nb", "not allowed"),
    ("é", "not allowed"), (3, "must be a string"), (None, "must be a string"),
])
def test_unsafe_names_are_refused_naming_the_field(name, why):
    assert why in name_problem(name)
    with pytest.raises(InputError) as info:
        check_name(name, path="r.yaml", field="stages[1].name")
    assert str(info.value).startswith("r.yaml: field 'stages[1].name': ") and "one safe path component" in str(info.value)


def test_contained_joins_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "out" / "a" / "b"
    root.mkdir(parents=True)
    assert contained(root, "sft") == root / "sft"
    assert contained(root, "sft", "checkpoint-1") == root / "sft" / "checkpoint-1"
    for parts in (("../../escaped_sft",), ("/abs",), ("..",), ("x", "..", "..", "y")):
        with pytest.raises(InputError, match="outside the folder"):
            contained(root, *parts, field="--output-dir")
    # A symbolic link planted inside the folder that points elsewhere is outside too; one pointing inside is not.
    (tmp_path / "elsewhere").mkdir()
    (root / "sft").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="outside the folder") as info:
        contained(root, "sft", field="--output-dir")
    assert "field '--output-dir'" in str(info.value)
    (root / "inner").mkdir()
    (root / "alias").symlink_to(root / "inner")
    assert contained(root, "alias") == root / "alias"
    # The named folder itself may be a link: what counts is where it resolves.
    (tmp_path / "link").symlink_to(root)
    assert contained(tmp_path / "link", "sft2") == tmp_path / "link" / "sft2"


def _special_files(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    sock_path = tmp_path / "sock.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "missing.jsonl")
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    return sock, {"is a named pipe (FIFO)": fifo, "is a folder": folder, "is a socket": sock_path,
                  "symbolic link to a missing file": dangling, "symbolic link loop": loop,
                  "file not found": tmp_path / "nothing.jsonl", "a part of this path is a file": tmp_path / "f" / "x"}


def test_file_problem_names_every_kind_and_never_opens(tmp_path):
    (tmp_path / "f").write_text("{}\n")
    sock, cases = _special_files(tmp_path)
    try:
        for words, path in cases.items():
            done: list = []
            # A reader that opened the FIFO would block forever: run each check with a deadline.
            worker = threading.Thread(target=lambda: done.append(file_problem(path)), daemon=True)
            worker.start()
            worker.join(5)
            assert done and words in done[0], (path, done)
            with pytest.raises(InputError, match="^" + str(path)):
                list(iter_jsonl(path))
    finally:
        sock.close()
    good = tmp_path / "good.jsonl"
    good.write_text('{"a": 1}\n')
    (tmp_path / "link.jsonl").symlink_to(good)  # a link to a regular file is read (the hub cache is links)
    assert file_problem(good) is None and file_problem(tmp_path / "link.jsonl") is None
    assert require_regular_file(tmp_path / "link.jsonl") == str(tmp_path / "link.jsonl")


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "secret.jsonl"
    path.write_text('{"a": 1}\n')
    monkeypatch.setattr(os, "access", lambda p, mode: False)  # what a non-root user sees for a chmod 000 file
    assert file_problem(path) == "permission denied (the file is not readable)"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the reader as another user")
def test_unreadable_file_as_another_user(tmp_path_factory):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="longrm-unreadable-"))
    try:
        folder.chmod(0o755)
        secret = folder / "LongQA.jsonl"
        secret.write_text('{"a": 1}\n')
        secret.chmod(0o000)
        code = ("import sys; from longrm_tasks.jsonl import iter_jsonl; from longrm_tasks.errors import InputError\n"
                f"try:\n    list(iter_jsonl({str(secret)!r}))\nexcept InputError as e:\n    print(e); sys.exit(2)")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                  preexec_fn=lambda: os.setuid(65534), cwd="/", timeout=60)
        except PermissionError:  # this Python (a venv under /root) cannot be run by another user
            pytest.skip("the interpreter is not executable by another user; covered by test_unreadable_file_is_named")
        if done.returncode != 2 and "Permission denied" in done.stderr:  # the checkout is not readable to them
            pytest.skip("this checkout is not readable by another user")
        assert done.returncode == 2, done.stderr
        assert done.stdout.strip() == f"{secret}: permission denied (the file is not readable)"
    finally:
        (folder / "LongQA.jsonl").unlink(missing_ok=True)
        folder.rmdir()


def test_non_finite_field_names_the_path():
    assert non_finite_field({"a": 1.0, "b": [1, {"c": float("nan")}]}) == ("b[1].c", pytest.approx(float("nan"),
                                                                                                 nan_ok=True))
    assert non_finite_field({"output": [float("nan")], "x": 1}, allowed=("output",)) is None
    assert non_finite_field({"x": {"output": float("inf")}}, allowed=("output",))[0] == "x.output"
    assert non_finite_field([1, "NaN", 2.5]) is None  # the word in a string is text, not a number


@pytest.mark.parametrize("literal, name", [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
                                           ("1e999", "Infinity"), ("-2E+400", "-Infinity")])
def test_reader_refuses_non_finite_numbers_with_file_line_field(tmp_path, literal, name):
    path = tmp_path / "x.jsonl"
    path.write_text('{"ok": 1e300, "text": "NaN Infinity"}\n{"scores": [1, %s]}\n' % literal)
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    assert str(info.value).startswith(f"{path}:2: field 'scores[1]': non-finite number {name}")
    assert [obj for _, obj in iter_jsonl(path, allow_non_finite=True)][0]["ok"] == 1e300


def test_reader_with_orjson_refuses_them_too(tmp_path, monkeypatch):
    """orjson (optional) refuses NaN/Infinity literals itself but reads 1e999: both still end in the error."""
    import json

    from longrm_tasks import jsonl

    def orjson_like(text):
        return json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))

    monkeypatch.setattr(jsonl, "_fast_loads", orjson_like)
    for literal in ("NaN", "1e999"):
        path = tmp_path / "x.jsonl"
        path.write_text('{"a": [%s]}\n' % literal)
        with pytest.raises(InputError, match=r"x\.jsonl:1: field 'a\[0\]': non-finite number"):
            list(iter_jsonl(path))
        assert len(list(iter_jsonl(path, allow_non_finite=True))) == 1


# --- one line under a host command line (plain lm_eval) -------------------------------------------------------

class _Exited(Exception):
    pass


@pytest.fixture
def hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc[1]))
    monkeypatch.setattr(errors, "_exit_now", lambda code: (_ for _ in ()).throw(_Exited(code)))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    errors.install_one_line_exit("lm_eval")
    errors.install_one_line_exit("lm_eval")  # once per process, however often the hook runs
    return seen


def test_our_error_is_one_line_and_exit_2(hook, capsys):
    err = InputError("unknown order scheme '3'", field="order")
    with pytest.raises(_Exited) as info:
        sys.excepthook(InputError, err, None)
    assert info.value.args == (2,)
    assert capsys.readouterr().err == "lm_eval: error: field 'order': unknown order scheme '3'\n"
    assert hook == []


def test_an_announced_error_is_not_repeated_and_one_raised_from_ours_counts(hook, capsys):
    err = InputError("bad")
    err.announced = True
    with pytest.raises(_Exited):
        sys.excepthook(InputError, err, None)
    assert capsys.readouterr().err == ""
    wrapped = RuntimeError("host wrapper")
    wrapped.__cause__ = InputError("bad record", path="LongQA.jsonl", line=3)
    with pytest.raises(_Exited):
        sys.excepthook(RuntimeError, wrapped, None)
    assert capsys.readouterr().err == "lm_eval: error: LongQA.jsonl:3: bad record\n"


def test_other_errors_and_debug_mode_go_to_the_previous_hook(hook, monkeypatch, capsys):
    theirs = ValueError("lm-eval's own error")
    sys.excepthook(ValueError, theirs, None)
    assert hook == [theirs]
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    ours = InputError("x")
    sys.excepthook(InputError, ours, None)
    assert hook == [theirs, ours] and capsys.readouterr().err == ""


def test_hook_is_only_for_lm_evals_command_line(monkeypatch):
    from longrm_tasks.adapters.lm_eval.plugin import running_lm_eval_cli

    assert not running_lm_eval_cli()  # pytest (a library user of lm-eval) keeps Python's own behaviour
    monkeypatch.setattr(sys, "argv", ["lm_eval", "--model", "dummy"])  # what `longrm eval` hands lm-eval's parser
    assert not running_lm_eval_cli()


# --- names read from hand-edited lm-eval samples, joined when exporting predictions --------------------------

def _lm_eval_run(folder: Path, config: str) -> Path:
    """The smallest lm-eval output of one of our tasks: a results file and one logged generative sample."""
    import json

    stamp = "2025-01-01T00-00-00.000000"
    task = "long_rewardbench_pairwise_longqa"
    folder.mkdir(parents=True)
    (folder / f"results_{stamp}.json").write_text(json.dumps({"results": {task: {}}, "configs": {task: {}},
                                                              "n-samples": {task: {"effective": 1}}}))
    doc = {"config": config, "id": "q1", "tasktype": "PairWise", "subtype": "same", "length": "4k",
           "order": [0, 1], "judge": "generative", "parser": "reference", "orders": "paper", "protocol": "paper",
           "presentation": 0, "truncated_tokens": 0, "skipped": False, "overlong": False}
    sample = {"doc_id": 0, "doc": doc, "filtered_resps": ["[[A]]"]}
    (folder / f"samples_{task}_{stamp}.jsonl").write_text(json.dumps(sample) + "\n")
    return folder


@pytest.mark.parametrize("config", ["../../escaped", "/abs/escaped", "a/b", ".."])
def test_exported_prediction_names_from_samples_stay_inside(tmp_path, config):
    pytest.importorskip("lm_eval")
    from longrm_tasks.adapters.lm_eval.report import export_predictions

    run = _lm_eval_run(tmp_path / "run", config)
    out = tmp_path / "a" / "b" / "preds"
    with pytest.raises(InputError, match=r"field 'subset': .*one safe path component"):
        export_predictions(run, out)
    assert not (tmp_path / "escaped.jsonl").exists() and not (tmp_path / "a" / "escaped.jsonl").exists()
    assert not any(p.is_file() for p in (tmp_path / "a").rglob("*"))
    assert [p.name for p in export_predictions(_lm_eval_run(tmp_path / "good", "LongQA"), out)] == ["LongQA.jsonl"]
