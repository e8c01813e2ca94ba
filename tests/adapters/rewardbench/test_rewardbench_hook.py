"""The RewardBench hook outside RewardBench's environment: a free no-op, plus its pure parts.

The hook's effect inside RewardBench is tested in tests/adapters/rewardbench/test_rewardbench_isolated_env.py.
"""
import importlib.util
import subprocess
import sys

import pytest

from longrm_tasks.adapters.rewardbench import hook
from longrm_tasks.testing import build_tokenizer

from project import ROOT as REPO  # noqa: E402


@pytest.mark.skipif(importlib.util.find_spec("rewardbench") is not None, reason="rewardbench is installed here")
def test_without_rewardbench_activate_is_a_free_no_op():
    # The start-up .pth (installed package) may have put the package's watcher there already:
    # activate() must change nothing about it.
    code = ("import sys; state = lambda: [(type(f).__name__, sorted(getattr(f, 'names', ()))) for f in sys.meta_path]; "
            "before = state(); import longrm_tasks.adapters.rewardbench.hook as h; ok = h.activate(); "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'longrm_tasks.data', 'rewardbench') "
            "if m in sys.modules]; "
            "print(ok, heavy, state() == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False [] True" and out.stderr == ""


def test_switch_off(monkeypatch):
    monkeypatch.setenv(hook.ENV_SWITCH, "0")
    assert hook.activate() is False


@pytest.mark.parametrize("name, spec", [
    ("long-rewardbench", {"data": "hub"}),
    ("LCM-Lab/LongRewardBench", {"data": "hub"}),
    ("long-rewardbench:sample", {"data": "sample"}),
    ("long-rewardbench:/data/lrb?configs=LongQA,Summ&lengths=4k", {"data": "/data/lrb", "configs": "LongQA,Summ",
                                                                   "lengths": "4k"}),
    ("allenai/reward-bench", None),
    ("long-rewardbench-2", None),
    ("results/rewardbench1.jsonl", None),
])
def test_dataset_names(name, spec):
    assert hook.parse_dataset(name) == spec


def test_unknown_filter_is_an_error():
    with pytest.raises(ValueError, match="unknown filter"):
        hook.parse_dataset("long-rewardbench:sample?config=LongQA")


def test_max_length_keeps_an_explicit_choice(monkeypatch):
    monkeypatch.delenv(hook.ENV_MAX_LENGTH, raising=False)
    assert hook.max_length("rewardbench", 512) == hook.DEFAULT_MAX_LENGTH == 131_072
    assert hook.max_length("run_v2", 2048) == 131_072
    assert hook.max_length("rewardbench", 4096) == 4096
    monkeypatch.setenv(hook.ENV_MAX_LENGTH, "8192")
    assert hook.max_length("rewardbench", 512) == 8192


def test_fit_text_drops_the_middle_and_keeps_head_and_answer():
    tok = build_tokenizer()
    answer = "The answer is 42, because the document says so."
    head = "<|im_start|>user\nSTART OF THE TASK. "
    text = head + "filler words of a long context " * 400 + "Which number?<|im_end|>\n" \
        + f"<|im_start|>assistant\n{answer}<|im_end|>\n"
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    fitted, dropped = hook.fit_text(tok, text, answer, 300)
    assert len(tok(fitted)["input_ids"]) <= 300 < n
    assert dropped == n - len(tok(fitted, add_special_tokens=False)["input_ids"]) > 0
    assert fitted.startswith(head) and fitted.endswith(f"{answer}<|im_end|>\n")
    assert hook.fit_text(tok, text, answer, n + 10) == (text, 0)
    with pytest.raises(ValueError):  # the answer alone does not fit: refuse rather than cut it
        hook.fit_text(tok, text, answer, 5)
