"""What a new user reads: every option of every command says what it does; `longrm eval --help` and
`longrm tasks` explain our tasks and `--metadata` options from the task folder itself."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longrm_tasks import cli
from longrm_tasks.commands import eval as eval_command
from longrm_tasks.commands import tasks as tasks_command

from project import ROOT  # noqa: E402


def _walk(parser: argparse.ArgumentParser, prog: str):
    """(command path, action) for every action of ``parser`` and of all its subcommands, recursively."""
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{prog} {name}")
        else:
            yield prog, action


def test_every_option_of_every_command_has_a_help_line():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    unavailable = [name for name, p in sub.choices.items() if not any(a.dest == "help" for a in p._actions)]
    assert unavailable == [], f"commands that could not be loaded here: {unavailable}"
    missing = [f"{prog}: {'/'.join(action.option_strings) or action.dest}"
               for prog, action in _walk(parser, "longrm")
               if action.help is not argparse.SUPPRESS and not (action.help or "").strip()]
    assert missing == [], "options without a help line:\n" + "\n".join(missing)


def test_every_command_has_a_one_line_description():
    for name, module_name in cli.SUBCOMMANDS.items():
        module, reason = cli._load(module_name)
        assert module is not None, (name, reason)
        assert module.HELP.strip() and "\n" not in module.HELP, name


def _yaml_names() -> set[str]:
    """Task and group names written in the task YAMLs (read here with a plain regex, not the command's reader)."""
    names = set()
    for path in (ROOT / "task_yamls").rglob("*.yaml"):
        if path.name.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        match = re.search(r"^group: (\S+)$", text, re.M) or re.search(r"^task: (\S+)$", text, re.M)
        names.add(match.group(1))
    return names


def test_longrm_tasks_lists_every_task_once_with_a_line(capsys):
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    listed = [line.split()[0] for line in out if line.startswith("long_rewardbench")]
    assert sorted(listed) == sorted(_yaml_names())
    assert len(listed) == len(set(listed))
    by_name = {line.split()[0]: line for line in out if line.startswith("long_rewardbench")}
    assert "GROUP generative judge" in by_name["long_rewardbench"]
    assert by_name["long_rewardbench_ll_bon_code"].split(None, 1)[1] == "verdict log-likelihood: Best-of-N, Code"
    assert by_name["long_rewardbench_rm_pairwise"].split(None, 1)[1].endswith(": PairWise, every config")
    assert by_name["long_rewardbench_math"].split(None, 1)[1] == "generative judge: both formats, Math"
    assert f"3 groups and {len(listed) - 3} tasks" in out[-1]


def test_longrm_tasks_path_is_the_folder_lm_eval_reads(capsys):
    from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR

    assert cli.main(["tasks", "--path"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == Path(TASK_DIR) and printed.is_dir()
    assert (printed / "long_rewardbench" / "long_rewardbench.yaml").is_file()


def test_task_reader_keeps_lm_eval_function_tags_as_text(tmp_path):
    (tmp_path / "t.yaml").write_text("task: long_rewardbench_x\nclass: !function a.b.C\n"
                                     "dataset_kwargs:\n  longrm_judge: reward\n  longrm_tasktypes: BestOfN\n")
    [entry] = tasks_command.read_tasks(tmp_path)
    assert entry == tasks_command.TaskEntry("long_rewardbench_x",
                                            "scalar reward model (--model hf-rm / vllm-rm): Best-of-N, every config",
                                            False)


def test_eval_help_documents_every_metadata_option_the_loader_accepts():
    from longrm_tasks.adapters.lm_eval.options import OUR_KEYS

    assert set(eval_command.METADATA_OPTIONS) == set(OUR_KEYS)
    text = eval_command.help_text()
    for key in OUR_KEYS:
        assert re.search(rf"^  {key} +\S", text, re.M), key
    for group in ("long_rewardbench ", "long_rewardbench_ll ", "long_rewardbench_rm "):
        assert group in text
    assert "lm_eval run --help" in text


@pytest.mark.parametrize("argv", [["eval"], ["eval", "--help"], ["eval", "-h"]])
def test_longrm_eval_help_is_ours_and_imports_no_lm_eval(argv):
    # A fresh interpreter: the help must come without starting lm-eval (fast, and works when lm-eval is broken).
    code = ("import sys; from longrm_tasks import cli; status = cli.main(sys.argv[1:]); "
            "print('LM_EVAL_IMPORTED' if 'lm_eval' in sys.modules else '', end=''); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: longrm eval LM_EVAL_ARGS")
    assert "--metadata options" in done.stdout and "LM_EVAL_IMPORTED" not in done.stdout


def test_task_yaml_slices_are_the_ones_the_command_knows():
    # A new judge or format in _generate.py must get words in `longrm tasks` too.
    judges, formats = set(), set()
    for path in (ROOT / "task_yamls").rglob("long_rewardbench*.yaml"):
        text = path.read_text(encoding="utf-8")
        kwargs = re.search(r"^dataset_kwargs:\n((?:  .*\n)+)", text, re.M)
        if kwargs:
            values = yaml.safe_load(kwargs.group(1))
            judges.add(values["longrm_judge"])
            formats.update(str(values.get("longrm_tasktypes", "PairWise")).split(","))
    assert judges == set(tasks_command.JUDGES)
    assert formats == set(tasks_command.FORMATS)
