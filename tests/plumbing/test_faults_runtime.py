"""Runtime faults, entry point x fault class (issue 19): a full disk on every writer, a folder given
as an output file, a kill mid-write, `lm_eval --use_cache` killed and rerun, `longrm synth` against
a judge server that fails, and hand-edited lm-eval output in `longrm report` / `longrm score`.

Each row is the exact command and what must happen: one stderr line (no traceback) naming the file,
exit code 2 (the `cli.guarded` contract for bad input and OS errors), the previous output intact
and no temporary file left; or, where the fault is one to survive, the recovery (retried and
counted, resumed to the same bytes, served from the cache).

A full disk is a file-size limit (RLIMIT_FSIZE) set in the child before it starts, with SIGXFSZ
ignored so that write() fails with EFBIG instead of the signal killing the process.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fault_servers import FAULTS, FaultyJudge, judge_record, start_server
from synth_files import write_corpus, write_jsonl

from project import ROOT  # noqa: E402
TASK_DIR = ROOT / "task_yamls"


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", **extra)


def _file_size_limit(nbytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the child at the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def longrm(*args, cwd, limit: int | None = None, env: dict | None = None, timeout: int = 120):
    return subprocess.run([sys.executable, "-m", "longrm_tasks.cli", *map(str, args)], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_file_size_limit(limit) if limit else None)


PROGRESS_BAR = re.compile(r"^([\w -]+:)?\s*\d+%\|")


def one_line(proc, *needles, code=2) -> str:
    """The command failed with ``code`` and said so in one stderr line holding every needle (any case)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # a progress bar (tqdm: "vote:  33%|███▎ | 2/6 ...") is not an error line
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not PROGRESS_BAR.match(line)]
    assert len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert str(needle).lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


PRED_ROWS = [dict(output="[[A]]" if i % 3 else "[[B]]", shuffled_order=[i % 2, 1 - i % 2], subset="LongQA",
                  tasktype="PairWise", subtype="same", ctx_length="4k", id=str(i)) for i in range(6)]
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs every writer reads: predictions, a score JSON, a tokenizer, synthesis records."""
    from longrm_tasks.testing import build_tokenizer

    root = tmp_path_factory.mktemp("fault_inputs")
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PRED_ROWS))
    assert longrm("score", "--predictions", root / "p.jsonl", "--json", root / "s.json", "--quiet",
                  cwd=root).returncode == 0
    build_tokenizer().save_pretrained(root / "tok")
    (root / "rb_scores.jsonl").write_text("".join(  # per-candidate scores, as `rewardbench score` reads them
        json.dumps({"id": i, "subset": "LongQA", "scores_chosen": [c], "scores_rejected": [0.5]}) + "\n"
        for i, c in (("a", 1.0), ("b", 0.1))))
    write_corpus(root / "corpus.jsonl", 200)
    write_jsonl(root / "short.jsonl", ({"id": f"s{i}", "question": f"Question {i}?",
                                        "key_passage": f"Fact number {i}."} for i in range(6)))
    responses = ["Orange.", "Blue.", "Green.", "Red.", "Grey.", "Black."]
    (root / "judge_in.jsonl").write_text("".join(json.dumps(judge_record(i, r)) + "\n"
                                                 for i, r in enumerate(responses)))
    # matplotlib builds its font cache on first use; build it here, not under the size limit
    mpl = root / "mplconfig"
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=_env(MPLCONFIGDIR=str(mpl)),
                   check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def judge_server():
    url, stop = start_server()
    yield url
    stop()


@pytest.fixture(autouse=True)
def _fresh_judge():
    FaultyJudge.reset()
    FaultyJudge.stall_seconds = 1.0


# ---------------------------------------------------------------- a full disk, on every writer

S2L = ["synth", "short-to-long", "--records", "{in}/short.jsonl", "--corpus", "{in}/corpus.jsonl",
       "--tokenizer", "{in}/tok", "--lengths", "1000", "--depths", "0.5"]
# (row id, command, the output it writes, the file-size limit in bytes)
WRITERS = [
    ("score --json", ["score", "--predictions", "{in}/p.jsonl", "--quiet", "--json", "{out}"], "s.json", 300),
    ("report --markdown", ["report", "{in}/s.json", "--markdown", "{out}"], "r.md", 200),
    ("report --json", ["report", "{in}/s.json", "--json", "{out}"], "r.json", 200),
    ("report --plot", ["report", "{in}/s.json", "--plot", "{out}"], "r.png", 2000),
    ("render --out", ["render", "--data", "sample", "--tokenizer", "{in}/tok", "--configs", "LongQA", "--out",
                      "{out}"], "prompts.jsonl", 4000),
    ("rewardbench score --json", ["rewardbench", "score", "--scores", "{in}/rb_scores.jsonl", "--quiet", "--json",
                                  "{out}"], "rb.json", 100),
]


def _argv(template, inputs: Path, out: Path) -> list[str]:
    return [part.replace("{in}", str(inputs)).replace("{out}", str(out)) for part in template]


@pytest.mark.parametrize("row", WRITERS, ids=[w[0] for w in WRITERS])
def test_a_full_disk_names_the_file_and_keeps_the_previous_one(row, inputs, tmp_path):
    _, template, name, limit = row
    out = tmp_path / name
    previous = b"the previous, complete output\n" * 4
    out.write_bytes(previous)
    proc = longrm(*_argv(template, inputs, out), cwd=tmp_path, limit=limit,
                  env=_env(MPLCONFIGDIR=str(inputs / "mplconfig")))
    one_line(proc, str(out), "file too large")
    assert out.read_bytes() == previous
    assert temporaries(tmp_path) == []
    # Without the limit the same command replaces it.
    assert longrm(*_argv(template, inputs, out), cwd=tmp_path,
                  env=_env(MPLCONFIGDIR=str(inputs / "mplconfig"))).returncode == 0
    assert out.read_bytes() != previous


DEV_FULL = [row for row in WRITERS if row[0] in ("score --json", "report --markdown", "render --out")]


@pytest.mark.skipif(not os.path.exists("/dev/full") or not os.access("/dev", os.W_OK),
                    reason="needs /dev/full in a writable /dev")
@pytest.mark.parametrize("row", DEV_FULL, ids=[w[0] for w in DEV_FULL])
def test_a_device_with_no_space_is_named(row, inputs, tmp_path):
    """ENOSPC, as a full disk gives it (/dev/full is written directly: a device is never replaced)."""
    one_line(longrm(*_argv(row[1], inputs, Path("/dev/full")), cwd=tmp_path), "/dev/full: no space left")


def test_a_full_disk_during_a_rewardbench_export_keeps_the_previous_export(inputs, tmp_path):
    out = tmp_path / "rb"
    assert longrm("rewardbench", "export", "--data", "sample", "--out", out, cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = longrm("rewardbench", "export", "--data", "sample", "--configs", "LongQA", "--out", out, cwd=tmp_path,
                  limit=3000)
    one_line(proc, str(out / "rewardbench1.jsonl"), "file too large")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging folder, nothing replaced


def test_a_full_disk_while_writing_a_model_card_keeps_the_previous_card(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("previous card\n")
    (tmp_path / "stage2.jsonl").write_text("{}\n")
    child = textwrap.dedent(f"""
        from pathlib import Path
        from longrm_tasks.cli import guarded
        from longrm_tasks.train.model_card import write_card
        from longrm_tasks.train.recipe import Recipe, Stage
        root = Path({str(tmp_path)!r})
        stage = Stage("sft", "sft", root / "stage2.jsonl")
        recipe = Recipe(path=root / "r.yaml", name="r", base_model="tiny-random", output_dir=root, stages=[stage])
        raise SystemExit(guarded("train", lambda: write_card(root, recipe=recipe, stage=stage,
            input_model="tiny-random", config_values={{"pad": "x" * 5000}}, data_report={{}}, metrics={{}}) and 0))
    """)
    proc = subprocess.run([sys.executable, "-c", child], env=_env(), capture_output=True, text=True,
                          preexec_fn=_file_size_limit(2000), timeout=120)
    one_line(proc, str(card), "file too large")
    assert card.read_text() == "previous card\n" and temporaries(tmp_path) == []


def test_a_full_disk_while_saving_a_train_checkpoint_is_one_line(tmp_path):
    """torch and safetensors report a full disk without a file name (torch: "unexpected pos ..."):
    the stage folder is named, with how to go on; resuming past a cut-short checkpoint is in test_train_cli."""
    proc = longrm("train", "--config", ROOT / "recipes" / "tiny_cpu.yaml", "--output-dir", tmp_path / "run",
                  "--stage", "sft", "--set", "stages.sft.max_records=4", cwd=tmp_path, limit=300_000)
    # training logs its progress on stderr (INFO lines, bars): the error is the one line that says error
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr[-3000:]  # (the Trainer's bar may close after it)
    line = errors[0]
    assert line.startswith("longrm train: error: ") and str(tmp_path / "run" / "sft") in line
    assert "file too large" in line.lower() and "--resume" in line
    assert not (tmp_path / "run" / "sft" / "longrm_stage.json").exists()  # not marked finished


def test_a_full_disk_while_the_demo_builds_its_model_is_one_line(tmp_path):
    proc = longrm("demo", "--out", tmp_path / "demo", cwd=tmp_path, limit=50_000)
    errors = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"longrm demo: error: {tmp_path / 'demo'}: ") and "file too large" in errors[0].lower()


def test_a_full_disk_stops_short_to_long_resumably(inputs, tmp_path):
    argv = _argv(S2L, inputs, tmp_path)
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    assert longrm(*argv, "-o", clean, cwd=tmp_path).returncode == 0
    limit = len(clean.read_bytes().splitlines(keepends=True)[0]) * 2 + 100  # room for two records and a bit
    line = one_line(longrm(*argv, "-o", out, cwd=tmp_path, limit=limit), str(out), "file too large",
                    "of 6 input records done", "--resume")
    assert "2 of 6" in line
    proc = longrm(*argv, "-o", out, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["resumed_from"] == 2
    assert out.read_bytes() == clean.read_bytes()


def _vote(url, src, out, *judges, extra=()):
    argv = ["synth", "vote", "--input", src, "-o", out, "--judge-context", "full", "--rejected", "others",
            "--batch-size", "1", "--timeout", "0.5", "--retries", "2", "--retry-wait", "0", *extra]
    for model in judges:
        argv += ["--judge", f"openai:{model}@{url}"]
    return argv


def test_a_full_disk_stops_vote_resumably(inputs, judge_server, tmp_path):
    src = inputs / "judge_in.jsonl"
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    assert longrm(*_vote(judge_server, src, clean, "ok", "e500"), cwd=tmp_path).returncode == 0
    limit = len(clean.read_bytes().splitlines(keepends=True)[0]) * 3 + 50
    FaultyJudge.reset()
    one_line(longrm(*_vote(judge_server, src, out, "ok", "e500"), cwd=tmp_path, limit=limit), str(out),
             "file too large", "3 of 6 input records done", "--resume")
    proc = longrm(*_vote(judge_server, src, out, "ok", "e500", extra=["--resume"]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == clean.read_bytes()


# ---------------------------------------------------------------- a folder given as an output file

FOLDER_AS_FILE = [
    ("score --json", ["score", "--predictions", "{in}/p.jsonl", "--quiet", "--json", "{out}"]),
    ("report --markdown", ["report", "{in}/s.json", "--markdown", "{out}"]),
    ("report --json", ["report", "{in}/s.json", "--json", "{out}"]),
    ("report --plot", ["report", "{in}/s.json", "--plot", "{out}"]),
    ("render --out", ["render", "--data", "sample", "--tokenizer", "{in}/tok", "--out", "{out}"]),
    ("rewardbench score --json", ["rewardbench", "score", "--scores", "{in}/rb_scores.jsonl", "--json", "{out}"]),
    ("synth short-to-long -o", [*S2L, "-o", "{out}"]),
    ("synth vote -o", ["synth", "vote", "--input", "{in}/judge_in.jsonl", "--judge", "openai:a@http://127.0.0.1:9/v1",
                       "--judge", "openai:b@http://127.0.0.1:9/v1", "-o", "{out}"]),
]


@pytest.mark.parametrize("row", FOLDER_AS_FILE, ids=[r[0] for r in FOLDER_AS_FILE])
def test_a_folder_given_as_an_output_file_is_refused_in_one_line(row, inputs, tmp_path):
    folder = tmp_path / ("out.png" if "plot" in row[0] else "out.jsonl")
    folder.mkdir()
    (folder / "keep.txt").write_text("untouched")
    one_line(longrm(*_argv(row[1], inputs, folder), cwd=tmp_path), str(folder), "folder")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_a_file_given_as_the_export_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "export"
    out.write_text("a file")
    one_line(longrm("rewardbench", "export", "--data", "sample", "--out", out, cwd=tmp_path), str(out), "folder")
    assert out.read_text() == "a file"


# ---------------------------------------------------------------- a kill mid-write, at the entry points

STALL_IN_FSYNC = """
import sys, time
import longrm_tasks.atomic as atomic
def stall(fd):
    print("writing", flush=True)
    time.sleep(120)
atomic.os.fsync = stall
from longrm_tasks.cli import main
sys.exit(main(sys.argv[1:]))
"""
KILLED = [
    ("report --json", ["report", "{in}/s.json", "--json", "{out}"], "r.json"),
    ("render --out", ["render", "--data", "sample", "--tokenizer", "{in}/tok", "--configs", "LongQA", "--out",
                      "{out}"], "prompts.jsonl"),
    ("rewardbench export", ["rewardbench", "export", "--data", "sample", "--configs", "LongQA", "--out", "{out}"],
     "rb"),
]


@pytest.mark.parametrize("row", KILLED, ids=[k[0] for k in KILLED])
def test_a_kill_mid_write_leaves_the_previous_output(row, inputs, tmp_path):
    """SIGKILL after the new content is written and before the rename (`score --json`: test_reliability_atomic)."""
    _, template, name = row
    out = tmp_path / name
    argv = _argv(template, inputs, out)
    assert longrm(*argv, cwd=tmp_path).returncode == 0
    # (a killed export leaves its hidden staging folder: never read as part of the export)
    snapshot = lambda: ({p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}  # noqa: E731
                        if out.is_dir() else out.read_bytes())
    if out.is_dir():
        previous = snapshot()
    else:
        out.write_bytes(b"previous\n")
        previous = b"previous\n"
    child = subprocess.Popen([sys.executable, "-c", STALL_IN_FSYNC, *argv], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while (said := child.stdout.readline()) and said.strip() != "writing":
            pass  # the report's table comes first
        assert said.strip() == "writing"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.stdout.close()
    assert snapshot() == previous
    assert longrm(*argv, cwd=tmp_path).returncode == 0  # what the killed run left does not block a rerun
    assert snapshot() != previous or out.is_dir()


# ---------------------------------------------------------------- lm_eval --use_cache, killed and rerun

COUNTING_LM_EVAL = """
import os, signal, sys
from lm_eval.models.huggingface import HFLM
kill_after = int(os.environ.get("KILL_AFTER", "0"))
calls = os.environ["COUNT_FILE"]
original = HFLM._model_generate
done = [0]
def counted(self, *args, **kwargs):
    if kill_after and done[0] == kill_after:  # the results so far are in lm-eval's cache
        os.kill(os.getpid(), signal.SIGKILL)
    done[0] += 1
    with open(calls, "a") as handle:
        handle.write("generate\\n")
    return original(self, *args, **kwargs)
HFLM._model_generate = counted
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval", *sys.argv[1:]]
cli_evaluate()
"""
N_DOCS = 4


@pytest.fixture(scope="module")
def lm_eval_run(tmp_path_factory):
    """A clean `lm_eval --use_cache` run of the generative task on the sample (tiny random model)."""
    pytest.importorskip("lm_eval")
    from longrm_tasks.testing import save_tiny_model

    root = tmp_path_factory.mktemp("lm_eval_cache")
    model = save_tiny_model(root / "tiny", hidden=32, layers=1, max_positions=4096)
    argv = ["--model", "hf", "--model_args", f"pretrained={model},dtype=float32,max_length=4096",
            "--tasks", "long_rewardbench", "--include_path", str(TASK_DIR), "--metadata", '{"data_dir": "sample"}',
            "--limit", str(N_DOCS), "--gen_kwargs", "max_gen_toks=4", "--batch_size", "1", "--log_samples"]

    def lm_eval(name, kill_after=0, cache=None):
        env = _env(COUNT_FILE=str(root / f"{name}.calls"), KILL_AFTER=str(kill_after))
        proc = subprocess.run([sys.executable, "-c", COUNTING_LM_EVAL, *argv, "--use_cache",
                               str(root / (cache or name) / "cache"), "--output_path", str(root / name / "out")],
                              env=env, capture_output=True, text=True, timeout=300)
        calls_file = root / f"{name}.calls"
        calls = len(calls_file.read_text().splitlines()) if calls_file.exists() else 0
        return proc, calls

    clean, calls = lm_eval("clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert calls == N_DOCS
    return root, lm_eval


def _only(folder: Path, pattern: str) -> Path:
    found = list(folder.rglob(pattern))
    assert len(found) == 1, found
    return found[0]


def _samples(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in _only(folder, "samples_*.jsonl").read_text().splitlines()]
    return sorted(({"doc_id": r["doc_id"], "resps": r["resps"], "AVG": r["AVG"]} for r in rows),
                  key=lambda r: r["doc_id"])


def test_lm_eval_cache_killed_mid_run_and_rerun_does_no_work_twice(lm_eval_run):
    root, lm_eval = lm_eval_run
    killed, calls = lm_eval("killed", kill_after=2)
    assert killed.returncode == -signal.SIGKILL and calls == 2
    assert not list((root / "killed").rglob("results_*.json"))  # nothing half-reported
    rerun, calls = lm_eval("rerun", cache="killed")  # the same cache: the two done generations are not redone
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert calls == N_DOCS - 2
    assert _samples(root / "rerun") == _samples(root / "clean")
    clean = json.loads(_only(root / "clean", "results_*.json").read_text())["results"]
    again = json.loads(_only(root / "rerun", "results_*.json").read_text())["results"]
    assert again == clean


# ---------------------------------------------------------------- hand-edited lm-eval output

def _edited_run(lm_eval_run, tmp_path) -> tuple[Path, Path]:
    root, _ = lm_eval_run
    out = tmp_path / "out"
    shutil.copytree(root / "clean" / "out", out)
    return out, _only(out, "samples_*.jsonl")


def _edit_line(path: Path, index: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[index] = edit(lines[index])
    path.write_text("\n".join(lines) + "\n")


def _set(field_path, value):
    def edit(line):
        row = json.loads(line)
        *parents, last = field_path
        target = row
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return json.dumps(row)
    return edit


EDITS = [
    ("bad JSON line", lambda line: line[: len(line) // 2], ":2", "JSON"),
    ("missing doc", _set(["doc"], KeyError), ":2", "doc"),
    ("missing filtered_resps", _set(["filtered_resps"], KeyError), ":2", "field 'filtered_resps'"),
    ("filtered_resps of the wrong type", _set(["filtered_resps"], "[[A]]"), ":2", "field 'filtered_resps'"),
    ("a generation that is not text", _set(["filtered_resps"], [3]), ":2", "field 'filtered_resps'"),
    ("missing doc.id", _set(["doc", "id"], KeyError), ":2", "doc.id"),
    ("a flag of the wrong type", _set(["doc", "skipped"], "no"), ":2", "skipped"),
    ("an unknown parser", _set(["doc", "parser"], "q"), ":2", "doc.parser"),
    ("an unknown judge", _set(["doc", "judge"], "x"), ":2", "doc.judge"),
    ("a presentation that is text", _set(["doc", "presentation"], "x"), ":2", "doc.presentation"),
    ("a non-finite length", _set(["doc", "length"], float("nan")), ":2", "ctx_length"),
    ("truncated_tokens of the wrong type", _set(["doc", "truncated_tokens"], 1.5), ":2", "doc.truncated_tokens"),
    ("order of the wrong type", _set(["doc", "order"], "AB"), ":2", "order"),
    ("an array line", lambda line: "[1, 2]", ":2", "JSON object"),
]


@pytest.mark.parametrize("row", EDITS, ids=[e[0] for e in EDITS])
def test_a_hand_edited_samples_file_is_named_with_its_line(row, lm_eval_run, tmp_path):
    _, edit, where, needle = row
    out, samples = _edited_run(lm_eval_run, tmp_path)
    _edit_line(samples, 1, edit)
    one_line(longrm("report", out, "--json", tmp_path / "r.json", cwd=tmp_path), f"{samples}{where}", needle)
    assert not (tmp_path / "r.json").exists()


def test_a_samples_file_with_a_row_missing_is_refused_not_miscounted(lm_eval_run, tmp_path):
    out, samples = _edited_run(lm_eval_run, tmp_path)
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:-1]))
    one_line(longrm("report", out, cwd=tmp_path), f"has {N_DOCS - 1} rows but lm-eval evaluated {N_DOCS}",
             "--no-samples")


def test_non_finite_numbers_in_a_hand_edited_score_json(inputs, tmp_path):
    edited = tmp_path / "s.json"
    edited.write_text(inputs.joinpath("s.json").read_text().replace('"AVG": ', '"AVG": NaN, "was": ', 1))
    one_line(longrm("report", edited, cwd=tmp_path), str(edited), "AVG")


def test_score_refuses_predictions_mixing_protocols(tmp_path):
    rows = [dict(PRED_ROWS[0], protocol="paper"), dict(PRED_ROWS[1], id="9", protocol="fit")]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line(longrm("score", "--predictions", mixed, "--json", tmp_path / "s.json", cwd=tmp_path),
             "different prompt protocols", "paper", "fit", "score each protocol separately")
    assert not (tmp_path / "s.json").exists()


def test_report_keeps_runs_of_different_models_and_protocols_apart(lm_eval_run, inputs, tmp_path):
    """A results folder holding two models' runs and a score JSON of another protocol: one row each, marked."""
    root, _ = lm_eval_run
    folder = tmp_path / "results"
    shutil.copytree(root / "clean" / "out", folder / "a")
    results = _only(folder / "a", "results_*.json")
    other = folder / "b" / "other-model"
    other.mkdir(parents=True)
    data = json.loads(results.read_text())
    data["model_name"] = data["model_name_sanitized"] = "other-model"
    for key in ("model_args",):
        if isinstance(data.get("config", {}).get(key), str):
            data["config"][key] = data["config"][key].replace("tiny", "other-model")
    (other / results.name).write_text(json.dumps(data))
    sample = _only(folder / "a", "samples_*.jsonl")
    shutil.copy(sample, other / sample.name)
    fit = tmp_path / "fit.jsonl"
    fit.write_text("".join(json.dumps(dict(r, protocol="fit")) + "\n" for r in PRED_ROWS))
    assert longrm("score", "--predictions", fit, "--json", tmp_path / "fit.json", "--quiet",
                  cwd=tmp_path).returncode == 0
    proc = longrm("report", folder, tmp_path / "fit.json", "--json", tmp_path / "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert len(runs) == 3 and len({r["source"] for r in runs}) == 3  # one row per run, none merged
    assert "other-model" in {r["model_name"] for r in runs} and len({r["model_name"] for r in runs}) == 3
    fit_run = next(r for r in runs if r["protocol"] == "fit")
    assert any("protocol differs" in m for m in fit_run["marks"])
    assert not any(r["paper_comparable"] for r in runs)  # the sample is not the hub data


# ---------------------------------------------------------------- a judge server that fails

def _judge(url, model, client):
    from longrm_tasks.train.synth.judges import GenerationSettings, OpenAIChatJudge, RetryPolicy

    return OpenAIChatJudge(model, model, url, GenerationSettings(),
                           retry=RetryPolicy(timeout=0.5, retries=2, backoff=0.0), client=client)


CLIENTS = ["urllib", pytest.param("openai", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("openai") is None, reason="the openai client is not installed"))]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("fault", FAULTS)
def test_each_judge_fault_is_retried_and_counted(fault, client, judge_server):
    judge = _judge(judge_server, fault, client)
    out = judge.generate([judge_record(0, "Orange.")["messages"], judge_record(1, "Blue.")["messages"]])
    assert [g.text.splitlines()[-1] for g in out] == ["[Score: 8]", "[Score: 3]"]
    assert judge.failed_attempts == 2  # each prompt's first request failed
    assert FaultyJudge.requests[(fault, "Orange.")] == 2


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("fault", FAULTS)
def test_a_judge_that_keeps_failing_ends_in_one_line(fault, client, judge_server):
    from longrm_tasks.errors import InputError

    FaultyJudge.reset({fault: 99})
    judge = _judge(judge_server, fault, client)
    with pytest.raises(InputError) as info:
        judge.generate([judge_record(0, "Orange.")["messages"]])
    assert "\n" not in str(info.value) and f"{fault}: no answer from" in str(info.value)
    assert "after 3 attempt(s)" in str(info.value) and judge.failed_attempts == 3
    assert FaultyJudge.requests[(fault, "Orange.")] == 3  # bounded: 1 + 2 retries


def test_vote_survives_every_fault_and_the_summary_counts_them(inputs, judge_server, tmp_path):
    src = inputs / "judge_in.jsonl"
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    assert longrm(*_vote(judge_server, src, clean, "ok", "ok2"), cwd=tmp_path).returncode == 0
    FaultyJudge.reset()
    proc = longrm(*_vote(judge_server, src, out, "ok", *FAULTS), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["failed_attempts"] == 6 * len(FAULTS)  # each fault judge failed once per record
    assert summary["items"] == summary["written"] == 6
    assert f"{6 * len(FAULTS)} judge requests failed" in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [json.loads(line)["id"] for line in clean.read_text().splitlines()]
    assert all(len(set(r["judge_scores"].values())) == 1 for r in rows)  # the faults changed no score


def test_vote_against_a_judge_that_stays_down_resumes_to_the_same_bytes(inputs, judge_server, tmp_path):
    src = inputs / "judge_in.jsonl"
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    FaultyJudge.reset({fault: 0 for fault in FAULTS})
    assert longrm(*_vote(judge_server, src, clean, "ok", "e500", "drop"), cwd=tmp_path).returncode == 0
    FaultyJudge.reset({"e500": 0, "drop": 0})
    FaultyJudge.requests[("drop", "Green.")] = -99  # "drop" goes down at the third record and stays down
    proc = longrm(*_vote(judge_server, src, out, "ok", "e500", "drop"), cwd=tmp_path)
    one_line(proc, "drop: no answer from", "after 3 attempt(s)", "2 of 6 input records done", "--resume")
    FaultyJudge.heal()
    proc = longrm(*_vote(judge_server, src, out, "ok", "e500", "drop", extra=["--resume"]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["resumed_from"] == 2 and summary["written"] == 6
    assert out.read_bytes() == clean.read_bytes()


# ---------------------------------------------------------------- hand-edited predictions and score JSON

PREDICTION_EDITS = [  # (row id, line 3 as edited, the field named)
    ("bad JSON line", lambda row: json.dumps(row)[:-5], "invalid JSON"),
    ("missing field", lambda row: json.dumps({k: v for k, v in row.items() if k != "subset"}), "field 'subset'"),
    ("output of the wrong type", lambda row: json.dumps(dict(row, output=3)), "field 'output'"),
    ("order of the wrong type", lambda row: json.dumps(dict(row, shuffled_order="BA")), "field 'shuffled_order'"),
    ("order of booleans", lambda row: json.dumps(dict(row, shuffled_order=[True, False])), "field 'shuffled_order'"),
    ("non-finite order", lambda row: json.dumps(row).replace("[0, 1]", "[1, NaN]"), "shuffled_order[1]"),
    ("unknown length", lambda row: json.dumps(dict(row, ctx_length=4)), "field 'ctx_length'"),
    ("id of the wrong type", lambda row: json.dumps(dict(row, id=["x"])), "field 'id'"),
]


@pytest.mark.parametrize("row", PREDICTION_EDITS, ids=[e[0] for e in PREDICTION_EDITS])
def test_score_names_a_hand_edited_prediction_line(row, tmp_path, capsys):
    from longrm_tasks.cli import main

    _, edit, needle = row
    lines = [json.dumps(r) for r in PRED_ROWS]
    lines[2] = edit(PRED_ROWS[2])
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")
    assert main(["score", "--predictions", str(edited), "--quiet", "--json", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{edited}:3: " in err and needle in err, err
    assert not (tmp_path / "s.json").exists()


SCORE_JSON_EDITS = [  # (row id, edit of a `longrm score` JSON, what the line says)
    ("a metric that is text", lambda d: json.dumps(dict(d, AVG="high")), "field 'AVG'"),
    ("a metric that is a list", lambda d: json.dumps(dict(d, LongQA=[1])), "field 'LongQA'"),
    ("no AVG", lambda d: json.dumps({k: v for k, v in d.items() if k != "AVG"}), "'AVG'"),
    ("cut short", lambda d: json.dumps(d)[:-20], "not a JSON file"),
    ("an array", lambda d: json.dumps([d]), "'AVG'"),
]


@pytest.mark.parametrize("row", SCORE_JSON_EDITS, ids=[e[0] for e in SCORE_JSON_EDITS])
def test_report_names_a_hand_edited_score_json(row, inputs, tmp_path, capsys):
    from longrm_tasks.cli import main

    _, edit, needle = row
    edited = tmp_path / "edited.json"
    edited.write_text(edit(json.loads((inputs / "s.json").read_text())))
    assert main(["report", str(edited), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{edited}: " in err and needle in err, err
    assert not (tmp_path / "r.json").exists()


def test_an_input_error_inside_an_atomic_write_keeps_its_own_file_name(tmp_path):
    """Only a nameless write failure (or one naming the temporary file) is renamed to the destination:
    a caller's generator that fails to read an input still names that input."""
    from longrm_tasks.atomic import out_of_space, write_jsonl

    def rows():
        yield {"a": 1}
        open(tmp_path / "missing-input.jsonl")  # noqa: SIM115 - raises FileNotFoundError naming it

    with pytest.raises(FileNotFoundError) as info:
        write_jsonl(tmp_path / "out.jsonl", rows())
    assert info.value.filename == str(tmp_path / "missing-input.jsonl")
    assert not (tmp_path / "out.jsonl").exists() and temporaries(tmp_path) == []
    # A library's error that is not about space stays as it was (None: nothing to say about the disk).
    assert out_of_space(RuntimeError("shape mismatch"), tmp_path) is None
    named = out_of_space(RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), tmp_path)
    assert str(tmp_path) in str(named) and "File too large" in str(named)
