"""`longrm demo` as a new user runs it: one screen saying what ran (a copyable `lm_eval` command), then
the report; lm-eval's logs in a file, shown when lm-eval fails. Runs in the session's wheel venv."""
from __future__ import annotations

import json
import shlex
from argparse import Namespace

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("torch")

from longrm_tasks.commands import demo  # noqa: E402


@pytest.fixture(scope="module")
def venv(lm_eval_venv):  # tests/conftest.py: shared, disk-cached
    return lm_eval_venv


def _command(stdout: str) -> list[str]:
    """The shell command printed after 'ran (...)', continuation lines joined, split as a shell would."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ran ")) + 1
    text = []
    for line in lines[start:]:
        text.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(text))


def test_shown_command_is_what_a_shell_reads_back():
    args = Namespace(data="my data/", max_gen_toks=7, limit=3)
    argv = demo.lm_eval_arguments("m o/del", "out dir", args)
    text = demo.shown_command(["lm_eval"], argv)
    assert shlex.split(text.replace("\\\n", " ")) == ["lm_eval", *argv]
    assert json.loads(argv[argv.index("--metadata") + 1]) == {"data_dir": "my data/"}


def test_demo_fits_one_screen_then_reports(venv, tmp_path):
    done = venv.run("-m", "longrm_tasks.cli", "demo", "--out", "demo", "--limit", "2", "--max-gen-toks", "2",
                    cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    before_report = done.stdout.split("$ longrm report")[0].strip().splitlines()
    assert len(before_report) <= 20, before_report
    assert not any(" INFO " in line or " WARNING " in line for line in done.stdout.splitlines())
    # The command shown is the one that ran (the hook is on in this venv: plain lm_eval).
    command = _command(done.stdout)
    assert command[0] == "lm_eval"
    assert command[command.index("--tasks") + 1] == "long_rewardbench,long_rewardbench_ll"
    assert json.loads(command[command.index("--metadata") + 1]) == {"data_dir": "sample"}
    output = tmp_path / command[command.index("--output_path") + 1]
    assert list(output.rglob("results_*.json")) and list(output.rglob("samples_*.jsonl"))
    assert "Selected Tasks" in (tmp_path / "demo" / "lm_eval.log").read_text()
    # The report follows; a random model's generative judge shows unparsed cells, not 0 % accuracy.
    report = done.stdout.split("$ longrm report")[1]
    gen_rows = [line for line in report.splitlines() if "[gen]" in line and "unp." in line]
    assert gen_rows, report
    assert (tmp_path / "demo" / "report.json").is_file() and (tmp_path / "demo" / "length.png").is_file()


def test_demo_shows_lm_eval_log_when_it_fails(venv, tmp_path):
    done = venv.run("-m", "longrm_tasks.cli", "demo", "--out", "demo", "--data", "no-such-folder", "--limit", "1",
                    cwd=tmp_path, hook=False, timeout=900)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout
    assert _command(done.stdout)[:2] == ["longrm", "eval"]  # without the hook the demo runs `longrm eval`
    assert "lm_eval failed" in done.stderr and str((tmp_path / "demo" / "lm_eval.log").relative_to(tmp_path)) \
        in done.stderr
    assert "no-such-folder" in done.stderr  # the loader's one-line reason, from the log's tail
