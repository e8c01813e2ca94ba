"""An input error already announced by a model/task inside `longrm eval` reaches the user once, exit code 2."""
from __future__ import annotations

import pytest

from longrm_tasks import cli
from longrm_tasks.errors import InputError, announced


def test_guarded_does_not_repeat_an_announced_error(monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def model_refuses():
        with announced("hf-rm"):  # what hf-rm / the task hooks do under lm-eval
            raise InputError("unknown hf-rm model arg 'bogus'", field="model_args")

    assert cli.guarded("eval", model_refuses) == cli.EXIT_INPUT
    assert capsys.readouterr().err == "hf-rm: error: field 'model_args': unknown hf-rm model arg 'bogus'\n"


def test_guarded_still_prints_an_error_nobody_announced(monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def bad_input():
        raise InputError("bad record", path="LongQA.jsonl", line=3, field="chosen")

    assert cli.guarded("score", bad_input) == cli.EXIT_INPUT
    assert capsys.readouterr().err == "longrm score: error: LongQA.jsonl:3: field 'chosen': bad record\n"


def test_longrm_eval_prints_a_model_arg_typo_once(tmp_path, monkeypatch, capsys):
    """The real path: lm-eval builds hf-rm inside `longrm eval`, hf-rm refuses an unknown model arg."""
    pytest.importorskip("lm_eval")
    from longrm_tasks.testing import save_tiny_model

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    model = save_tiny_model(tmp_path / "rm", kind="seq-cls", arch="qwen2", hidden=16, layers=1)
    code = cli.main(["eval", "--model", "hf-rm", "--model_args", f"pretrained={model},bogus_arg=1",
                     "--tasks", "long_rewardbench_rm_pairwise_math", "--metadata", '{"data_dir": "sample"}'])
    assert code == cli.EXIT_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("hf-rm: error: field 'model_args': unknown hf-rm model arg")
