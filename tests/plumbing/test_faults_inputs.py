"""Fault table, input side: entry point x fault class, one row per exact command and its one-line error.

Classes: names that become paths (recipe stage and recipe names, a symlink planted in the output
folder), files that are not regular files (FIFO, folder, socket, dangling and looping symlinks) for
`longrm validate` / `score` / `report` / `train --config` and lm-eval's ``data_dir``, non-finite
numbers in data / predictions / recipes, and wrong-typed ``--metadata`` values under ``longrm eval``
and plain ``lm_eval``. (Runtime faults — disk full, kill mid-write, faulty judge, ... — are in
tests/plumbing/test_faults_runtime.py.)

Every row asserts: exit code 2, exactly one error line matching the row's regex, no "Traceback",
and nothing created outside the folder the command was told to write to. ``longrm`` rows run
in-process through `longrm_tasks.cli.main` (the same `guarded` top level the console script
runs); plain ``lm_eval`` rows run as a subprocess, since the one-line exit is the interpreter's.
Commands run in a fresh folder (cwd), so the paths in each argv are exactly what a user types.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from longrm_tasks import cli

from project import ROOT  # noqa: E402
SAMPLE = ROOT / "longrm_tasks" / "data" / "sample"
TINY_RECIPE = ROOT / "recipes" / "tiny_cpu.yaml"
RM_TASK = "long_rewardbench_pairwise_math"  # the smallest slice: Math.jsonl only
PAIR = dict(output="[[A]]", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="same",
            ctx_length="4k", id="a")


# --- building the faults ---------------------------------------------------------------------------------------

def make_special(path: Path, kind: str) -> None:
    """``path`` as a file that is not a regular file (or a regular file, for ``kind='file'``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:  # the socket file stays after close
            sock.bind(str(path))
    elif kind == "dangling":
        path.symlink_to(path.parent / "no-such-file")
    elif kind == "loop":
        path.symlink_to(path.name)
    else:
        raise ValueError(kind)


SPECIAL = {"fifo": r"is a named pipe \(FIFO\), expected a regular file", "folder": "is a folder, expected a "
           "regular file", "socket": "is a socket, expected a regular file", "dangling": "is a symbolic link to a "
           "missing file", "loop": "is a symbolic link loop"}


def data_folder(special: str | None = None, *, config: str = "LongQA", edit: tuple[str, str] | None = None,
                line: int = 3):
    """``d/``: the bundled sample, with ``{config}.jsonl`` made special or its record on ``line`` edited."""
    def build(tmp: Path) -> None:
        shutil.copytree(SAMPLE, tmp / "d", ignore=shutil.ignore_patterns("README.md"))
        target = tmp / "d" / f"{config}.jsonl"
        if special:
            target.unlink()
            make_special(target, special)
        if edit:
            lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
            new = re.sub(edit[0], edit[1], lines[line - 1], count=1)
            assert new != lines[line - 1]
            lines[line - 1] = new
            target.write_text("".join(lines), encoding="utf-8")
    return build


def pair_row(**fields) -> str:
    """A PairWise prediction line; a string value ``"@NaN"`` is written as the bare literal NaN."""
    return re.sub(r'"@([^"]+)"', r"\1", json.dumps(dict(PAIR, **fields)))


def predictions(special: str | None = None, *, bad_row: str | None = None, name: str = "preds.jsonl"):
    """``p/preds.jsonl`` (one good row, then ``bad_row`` as written); or ``p/{name}`` made special."""
    def build(tmp: Path) -> None:
        (tmp / "p").mkdir()
        if special:
            make_special(tmp / "p" / name, special)
            if name != "preds.jsonl":  # a folder of predictions with one bad entry among good files
                (tmp / "p" / "good.jsonl").write_text(json.dumps(PAIR) + "\n")
            return
        (tmp / "p" / name).write_text(json.dumps(PAIR) + "\n" + (bad_row or "") + "\n")
    return build


def run_path(special: str, where: str):
    """A `longrm report` run: ``r.json`` itself special, or ``run/`` holding a special results file."""
    def build(tmp: Path) -> None:
        make_special(tmp / where, special)
    return build


def recipe(stage_name: str | None = None, *, name: str | None = None, extra: str = "", special: str | None = None):
    """``r.yaml``: tiny_cpu.yaml with the first stage renamed, the recipe renamed, or lines appended."""
    def build(tmp: Path) -> None:
        if special:
            make_special(tmp / "r.yaml", special)
            return
        text = TINY_RECIPE.read_text(encoding="utf-8")
        if stage_name is not None:
            text = text.replace("  - name: sft\n", f"  - name: {json.dumps(stage_name.format(tmp=tmp))}\n", 1)
        if name is not None:
            text = text.replace("name: tiny_cpu\n", f"name: {json.dumps(name)}\n", 1)
        (tmp / "r.yaml").write_text(text + extra, encoding="utf-8")
    return build


def training_data(suffix: str):
    """``t.jsonl`` / ``t.json`` (a JSON list): two SFT records, the second with a NaN inside its prompt."""
    def build(tmp: Path) -> None:
        good = '{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}'
        bad = good.replace('"content": "q"}', '"content": "q", "score": NaN}')
        text = f"{good}\n{bad}\n" if suffix == "jsonl" else f"[{good},\n{bad}]\n"
        (tmp / f"t.{suffix}").write_text(text)
    return build


def planted_link(tmp: Path) -> None:
    """``out/sft`` already exists as a symlink to a folder outside ``out``."""
    recipe()(tmp)
    (tmp / "out").mkdir()
    (tmp / "elsewhere").mkdir()
    (tmp / "out" / "sft").symlink_to(tmp / "elsewhere")


def both(*builders: Callable[[Path], None]):
    def build(tmp: Path) -> None:
        for b in builders:
            b(tmp)
    return build


# --- the table -------------------------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    setup: Callable[[Path], None]
    argv: list[str]
    expect: str  # regex for the one error line
    out: str | None = None  # the folder the command was told to write to (new files may appear only there)
    escapes: tuple[str, ...] = ()  # paths that a wrong join would have created: must not exist
    env: dict = field(default_factory=dict)


TRAIN = ["train", "--config", "r.yaml"]
NAME_RULE = r"a name used as a folder or file name must be one safe path component"

LONGRM_ROWS = [
    # names that become paths: refused at recipe load, naming the recipe and the field
    Row("train-stage-dotdot-escape", recipe("../../escaped_sft"),
        TRAIN + ["--output-dir", "out/a/b", "--stage", "../../escaped_sft"],
        r"^longrm train: error: r\.yaml: field 'stages\[0\]\.name': '\.\./\.\./escaped_sft' contains a path "
        r"separator: " + NAME_RULE, out="out/a/b", escapes=("out/escaped_sft", "escaped_sft")),
    Row("train-stage-parent", recipe("../x"), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': '\.\./x' contains a path separator", out="out", escapes=("x",)),
    Row("train-stage-absolute", recipe("{tmp}/abs_stage"), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': '/.*/abs_stage' contains a path separator", out="out", escapes=("abs_stage",)),
    Row("train-stage-nested", recipe("a/b"), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': 'a/b' contains a path separator", out="out"),
    Row("train-stage-dotdot", recipe(".."), TRAIN + ["--output-dir", "out/a"],
        r"field 'stages\[0\]\.name': '\.\.' names a folder, not a new one inside it", out="out/a"),
    Row("train-stage-dot", recipe("."), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': '\.' names a folder", out="out"),
    Row("train-stage-empty", recipe(""), TRAIN + ["--output-dir", "out"],
        r"^longrm train: error: r\.yaml: field 'stages\[0\]\.name': is required$", out="out"),
    Row("train-stage-nul", recipe("a\x00b"), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': contains a NUL character", out="out"),
    Row("train-stage-very-long", recipe("s" * 300), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': is 300 characters long \(at most 100\)", out="out"),
    Row("train-stage-option-like", recipe("-rf"), TRAIN + ["--output-dir", "out"],
        r"field 'stages\[0\]\.name': '-rf' has a character that is not allowed", out="out"),
    Row("train-stage-renamed-by-set", recipe(), TRAIN + ["--output-dir", "out", "--set", "stages.sft.name=../x"],
        r"field 'stages\[0\]\.name': '\.\./x' contains a path separator", out="out", escapes=("x",)),
    Row("train-recipe-name-default-output", recipe(name="../up"), TRAIN,
        r"^longrm train: error: r\.yaml: field 'name': '\.\./up' contains a path separator", escapes=("up",)),
    Row("train-output-symlink-planted", planted_link, TRAIN + ["--output-dir", "out"],
        r"^longrm train: error: /.*/out/sft: field '--output-dir': resolves to /.*/elsewhere, outside the folder "
        r"/.*/out it must stay in",
        out="out"),
    # files that are not regular files
    *[Row(f"train-config-{kind}", recipe(special=kind), TRAIN, rf"^longrm train: error: r\.yaml: {SPECIAL[kind]}")
      for kind in SPECIAL],
    *[Row(f"train-data-{kind}", both(recipe(), run_path(kind, "x.jsonl")),
          TRAIN + ["--output-dir", "out", "--set", "stages.sft.data=x.jsonl"],
          rf"^longrm train: error: /.*/r\.yaml: field 'stages\.sft\.data': data file /.*/x\.jsonl {SPECIAL[kind]}",
          out="out") for kind in ("fifo", "folder", "socket")],
    # (a recipe's data path is resolved when read, so a dangling link is named by its missing target)
    Row("train-data-dangling", both(recipe(), run_path("dangling", "x.jsonl")),
        TRAIN + ["--output-dir", "out", "--set", "stages.sft.data=x.jsonl"],
        r"^longrm train: error: /.*/r\.yaml: field 'stages\.sft\.data': data file not found: /.*/no-such-file$",
        out="out"),
    *[Row(f"validate-{kind}", data_folder(kind), ["validate", "--data", "d"],
          rf"^longrm validate: error: d/LongQA\.jsonl: {SPECIAL[kind]}") for kind in SPECIAL],
    *[Row(f"validate-data-dir-{kind}", run_path(kind, "d"), ["validate", "--data", "d"],
          rf"^longrm validate: error: d: field 'data_dir': {SPECIAL[kind].split(', expected')[0]}( \(.*\))?, "
          r"expected a folder "
          r"of \{Config\}\.jsonl files$") for kind in ("fifo", "socket", "dangling", "loop")],
    *[Row(f"validate-one-config-{kind}", data_folder(kind, config="Math"), ["validate", "--data", "d", "--configs",
                                                                            "Math"],
          rf"^longrm validate: error: d/Math\.jsonl: {SPECIAL[kind]}") for kind in ("fifo", "folder")],
    *[Row(f"score-{kind}", predictions(kind), ["score", "--predictions", "p/preds.jsonl"],
          rf"^longrm score: error: p/preds\.jsonl: {SPECIAL[kind]}") for kind in SPECIAL if kind != "folder"],
    *[Row(f"score-folder-holding-{kind}", predictions(kind, name="bad.jsonl"), ["score", "--predictions", "p"],
          rf"^longrm score: error: p/bad\.jsonl: {SPECIAL[kind]}") for kind in ("fifo", "folder", "dangling")],
    *[Row(f"report-{kind}", run_path(kind, "r.json"), ["report", "r.json"],
          rf"^longrm report: error: r\.json: {SPECIAL[kind]}") for kind in SPECIAL if kind != "folder"],
    *[Row(f"report-results-{kind}", run_path(kind, "run/results_2025-01-01T00-00-00.json"), ["report", "run"],
          rf"^longrm report: error: run/results_2025-01-01T00-00-00\.json: {SPECIAL[kind]}")
      for kind in ("fifo", "folder", "socket")],
    # non-finite numbers: data, predictions, recipes
    *[Row(f"validate-{literal}", data_folder(edit=(r'"length": \d+', f'"length": {literal}')),
          ["validate", "--data", "d"],
          rf"^longrm validate: error: d/LongQA\.jsonl:3: field 'length': non-finite number {re.escape(shown)}: "
          r"expected a finite number") for literal, shown in (("NaN", "NaN"), ("Infinity", "Infinity"),
                                                             ("-Infinity", "-Infinity"), ("1e999", "Infinity"))],
    # a fit context with no room for one prompt token: refused before the data or the tokenizer is loaded
    Row("render-fit-no-room", lambda tmp: None, ["render", "--data", "sample", "--tokenizer", "no-such-tokenizer",
                                                 "--protocol", "fit", "--max-length", "2056", "--out", "p.jsonl"],
        r"^longrm render: error: field '--max-length': --max-length 2056 leaves no room for the prompt next to 2048 "
        r"reserved tokens \(and 8 kept free\); lower --max-gen-toks or raise --max-length$"),
    Row("validate-score-nan", data_folder(config="Cite", edit=(r'"candidates_score": \[[^,\]]+',
                                                               '"candidates_score": [NaN'), line=4),
        ["validate", "--data", "d"],
        r"^longrm validate: error: d/Cite\.jsonl:4: field 'candidates_score\[0\]': non-finite number NaN"),
    Row("score-nan-count", predictions(bad_row=pair_row(id="b", truncated_tokens="@NaN")),
        ["score", "--predictions", "p/preds.jsonl"],
        r"^longrm score: error: p/preds\.jsonl:2: field 'truncated_tokens': non-finite number NaN"),
    Row("score-nan-order", predictions(bad_row=pair_row(shuffled_order=[0, "@NaN"])),
        ["score", "--predictions", "p/preds.jsonl"],
        r"^longrm score: error: p/preds\.jsonl:2: field 'shuffled_order\[1\]': non-finite number NaN"),
    Row("score-infinite-score", predictions(bad_row=pair_row(id="b", output=["@Infinity", 1.0])),
        ["score", "--predictions", "p/preds.jsonl"],
        r"^longrm score: error: p/preds\.jsonl:2: field 'output': score 0 is inf; expected a number"),
    *[Row(f"train-data-{suffix}-nan", both(recipe(), training_data(suffix)),
          TRAIN + ["--output-dir", "out", "--stage", "sft", "--set", f"stages.sft.data=t.{suffix}"],
          rf"^longrm train: error: /.*/t\.{suffix}:2: field 'prompt\[0\]\.score': non-finite number", out="out")
      for suffix in ("jsonl", "json")],
    Row("train-recipe-nan", recipe(extra="    lora: {lora_dropout: .nan}\n"), TRAIN + ["--output-dir", "out"],
        r"^longrm train: error: r\.yaml: field 'stages\[1\]\.lora\.lora_dropout': must be a finite number, got nan$",
        out="out"),
    Row("train-recipe-inf-default", recipe(), TRAIN + ["--output-dir", "out", "--set", "defaults.learning_rate=.inf"],
        r"^longrm train: error: r\.yaml: field 'defaults\.learning_rate': must be a finite number, got inf$",
        out="out"),
    Row("train-recipe-huge-number", recipe(), TRAIN + ["--output-dir", "out", "--set",
                                                       "stages.alignment.args.beta=-1e999"],
        r"^longrm train: error: r\.yaml: field 'stages\[1\] \(alignment\)\.args\.beta': must be a finite number, "
        r"got -inf$", out="out"),
]


def _files(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):  # does not follow symlinks: a loop is listed, not entered
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _check_written(tmp: Path, before: set[str], row: Row) -> None:
    new = _files(tmp) - before
    outside = sorted(p for p in new if row.out is None or not (p == row.out or p.startswith(row.out + os.sep)))
    assert outside == [], f"written outside {row.out or 'nothing'}: {outside}"
    for escape in row.escapes:
        assert not (tmp / escape).exists(), escape


@pytest.mark.parametrize("row", LONGRM_ROWS, ids=[r.id for r in LONGRM_ROWS])
def test_longrm_fault(row, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    row.setup(tmp_path)
    before = _files(tmp_path)
    code = cli.main(list(row.argv))
    err = capsys.readouterr().err
    # every line but progress bars (train builds its tiny base model before it reads the data)
    lines = [line for line in err.splitlines() if line.strip() and not re.search(r"\d+%\|", line)]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and re.search(row.expect, lines[0]), lines
    _check_written(tmp_path, before, row)


def test_nan_in_scores_is_still_a_missing_score(tmp_path, monkeypatch, capsys):
    """The one place NaN means something: RewardBench's missing score in ``output`` (counted unparsed)."""
    monkeypatch.chdir(tmp_path)
    predictions(bad_row=pair_row(id="b", output=["@NaN", 1.0]))(tmp_path)
    assert cli.main(["score", "--predictions", "p/preds.jsonl", "--json", "s.json"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["extra"]["unparsed"] == 1


# --- --metadata of every key, wrong types, under `longrm eval` and plain `lm_eval` -----------------------------

METADATA_ROWS = [  # key, a wrong-typed JSON value, the expected message
    ("protocol", 3, "expected a string, got int 3"),
    ("data_dir", [], r"expected a string, got list \[\]"),
    ("data_revision", {"a": 1}, r"expected a string, got dict \{'a': 1\}"),
    ("order", 3, "expected a string, got int 3"),
    ("max_length", True, "expected a positive integer, got bool True"),
    ("overlong", False, "expected a string, got bool False"),
    ("tokenizer", 1.5, "expected a string, got float 1.5"),
    ("parser", ["strict"], r"expected a string, got list \['strict'\]"),
    ("max_gen_toks", 1.5, "expected a positive integer, got float 1.5"),
]


def test_metadata_rows_cover_every_key():
    from longrm_tasks.adapters.lm_eval.options import OUR_KEYS

    assert sorted(k for k, _, _ in METADATA_ROWS) == sorted(OUR_KEYS)


@pytest.mark.parametrize("value", [True, 1.5, 3, [], ["x"], {}, {"a": 1}])
@pytest.mark.parametrize("key", ["protocol", "data_dir", "data_revision", "order", "overlong", "tokenizer",
                                 "parser", "max_length", "max_gen_toks"])
def test_every_key_refuses_every_wrong_json_type(key, value):
    """The parse lm-eval's task loading runs (both entry points below end in it), every key x JSON type."""
    from longrm_tasks.adapters.lm_eval.options import STRING_KEYS, parse_options
    from longrm_tasks.errors import InputError

    if key not in STRING_KEYS and isinstance(value, int) and not isinstance(value, bool):
        value = -value  # 3 is a fine length; -3 is not
    with pytest.raises(InputError) as info:
        parse_options({key: value})
    assert info.value.field == key


@pytest.mark.parametrize("key, value, message", METADATA_ROWS, ids=[k for k, _, _ in METADATA_ROWS])
def test_longrm_eval_metadata_fault(key, value, message, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    metadata = json.dumps({"data_dir": "sample", key: value} if key != "data_dir" else {key: value})
    # `dummy` is lm-eval's own no-op model: it loads in no time, and the metadata error comes from our task loader
    code = cli.main(["eval", "--model", "dummy", "--tasks", RM_TASK, "--metadata", metadata])
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith(("Long-RewardBench: ", "longrm eval: error:"))]
    assert code == 2 and "Traceback" not in err
    assert len(ours) == 1 and re.fullmatch(rf"Long-RewardBench: field '{key}': {message}", ours[0]), ours
    assert _files(tmp_path) == set()


def _hook_installed() -> bool:
    return (any((Path(p) / "longrm_tasks_hook.pth").is_file() for p in site.getsitepackages())
            and os.environ.get("LONGRM_TASKS_NO_HOOK", "").strip().lower() in ("", "0", "false", "no"))


def _plain_lm_eval(tmp: Path, metadata: str, *extra: str, **env):
    run_env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    run_env.update(env)
    return subprocess.run([sys.executable, "-m", "lm_eval", "--model", "dummy", "--tasks", RM_TASK,
                           "--metadata", metadata, *extra], cwd=tmp, capture_output=True, text=True, env=run_env,
                          timeout=300)


# One row per kind of check (string type, integer type, a value, the data folder): the parse is the same for
# every key (test_every_key_refuses_every_wrong_json_type); what these rows hold is lm_eval's exit path.
PLAIN_ROWS = [
    ("order-int", None, '{"data_dir": "sample", "order": 3}', r"Long-RewardBench: field 'order': expected a string, "
                                                             r"got int 3"),
    ("max_length-float", None, '{"data_dir": "sample", "max_length": 1.5}',
     r"Long-RewardBench: field 'max_length': expected a positive integer, got float 1\.5"),
    ("order-unknown", None, '{"data_dir": "sample", "order": "sideways"}',
     r"Long-RewardBench: field 'order': unknown order scheme 'sideways'.*"),
    ("data_dir-fifo", data_folder("fifo", config="Math"), '{"data_dir": "d"}',
     r"Long-RewardBench: /.*/d/Math\.jsonl: is a named pipe \(FIFO\), expected a regular file"),
    ("data_dir-nan", data_folder(config="Math", edit=(r'"length": \d+', '"length": NaN'), line=2),
     '{"data_dir": "d"}', r"Long-RewardBench: /.*/d/Math\.jsonl:2: field 'length': non-finite number NaN: .*"),
]


# Errors raised once lm-eval runs the task (building requests), outside our loader: said by the exit hook.
RUN_ROWS = [
    ("context-no-tokenizer", ["--limit", "1"], r"lm_eval: error: record Math/synthetic-Math-0000: field 'tokenizer': "
                                               r"the judge prompt was not rendered because no tokenizer was known: .*"),
    ("fewshot", ["--limit", "1", "--num_fewshot", "1"],
     r"lm_eval: error: field 'num_fewshot': Long-RewardBench is zero-shot: .*"),
]


def _one_error_line(stderr: str, expect: str) -> None:
    ours = [line for line in stderr.splitlines()
            if line.startswith("lm_eval: error:") or re.match(r"Long-RewardBench: (field '|/)", line)]
    assert len(ours) == 1 and re.fullmatch(expect, ours[0]), ours


@pytest.mark.parametrize("name, setup, metadata, expect", PLAIN_ROWS, ids=[r[0] for r in PLAIN_ROWS])
def test_plain_lm_eval_fault(name, setup, metadata, expect, tmp_path):
    pytest.importorskip("lm_eval")
    if not _hook_installed():
        pytest.skip("the start-up hook is not installed in this interpreter (plain lm_eval does not see our tasks)")
    if setup:
        setup(tmp_path)
    before = _files(tmp_path)
    done = _plain_lm_eval(tmp_path, metadata)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    _one_error_line(done.stderr, expect)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("name, extra, expect", RUN_ROWS, ids=[r[0] for r in RUN_ROWS])
def test_plain_lm_eval_run_time_fault(name, extra, expect, tmp_path):
    pytest.importorskip("lm_eval")
    if not _hook_installed():
        pytest.skip("the start-up hook is not installed in this interpreter")
    done = _plain_lm_eval(tmp_path, '{"data_dir": "sample"}', *extra)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    _one_error_line(done.stderr, expect)
    assert _files(tmp_path) == set()


def test_plain_lm_eval_debug_keeps_the_traceback(tmp_path):
    pytest.importorskip("lm_eval")
    if not _hook_installed():
        pytest.skip("the start-up hook is not installed in this interpreter")
    done = _plain_lm_eval(tmp_path, '{"data_dir": "sample", "order": 3}', LONGRM_DEBUG="1")
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "longrm_tasks.errors.InputError: field 'order': expected a string, got int 3" in done.stderr
