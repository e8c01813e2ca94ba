"""The real lm-eval command line, end to end, on tiny models built here and the bundled sample.

Runs in the session's fresh venv with this project's wheel installed
(the `lm_eval_venv` fixture, tests/conftest.py): plain ``python -m lm_eval`` (what the
``lm_eval`` console script runs) finds our tasks and ``hf-rm`` through the
start-up hook; ``longrm eval`` must do the same with the hook switched off.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("torch")

from longrm_tasks.testing import save_tiny_model  # noqa: E402

SAMPLE = '{"data_dir": "sample"}'
PAPER_METRICS = ("AVG", "LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math", "Same", "Diff",
                 "PairWise Avg", "4k", "8k", "16k", "32k", "64k", "128k", "Rank2", "Rank3", "Rank4", "Rank Avg")
LIMIT = "6"


@pytest.fixture(scope="module")
def venv(lm_eval_venv):  # tests/conftest.py: shared, disk-cached
    return lm_eval_venv


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"causal": save_tiny_model(root / "causal", kind="causal", arch="qwen2", hidden=32, layers=1),
            "seq-cls": save_tiny_model(root / "rm", kind="seq-cls", arch="llama", hidden=32, layers=1)}


def _run_lm_eval(venv, tmp_path, model: str, model_args: str, tasks: str, *extra: str):
    out = tmp_path / "out"
    done = venv.run("-m", "lm_eval", "--model", model, "--model_args", model_args, "--device", "cpu",
                    "--tasks", tasks, "--metadata", SAMPLE, "--limit", LIMIT, "--output_path", str(out),
                    "--log_samples", *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    [results_file] = out.rglob("results_*.json")
    samples = list(out.rglob("samples_*.jsonl"))
    return json.loads(results_file.read_text()), samples, done.stderr


def _assert_paper_metrics(results: dict, group: str, samples: list[Path]) -> None:
    metrics = results["results"][group]
    missing = [m for m in PAPER_METRICS if f"{m},none" not in metrics]
    assert missing == []
    assert 0.0 <= metrics["AVG,none"] <= 1.0
    assert sum(len(p.read_text().splitlines()) for p in samples) == int(LIMIT)


def test_generative_judge_group(venv, models, tmp_path):
    results, samples, _ = _run_lm_eval(venv, tmp_path, "hf", f"pretrained={models['causal']},dtype=float32",
                                       "long_rewardbench", "--gen_kwargs", "max_gen_toks=8")
    _assert_paper_metrics(results, "long_rewardbench", samples)
    # every result says how it was made: protocol, context and where it came from, generation budget, data
    made = results["configs"]["long_rewardbench_all"]["metadata"]["longrm"]
    assert made["protocol"] == "paper" and made["gen_tokens"] == 8 and made["order"] == "paper"
    assert made["max_length"] > 0 and made["max_length_source"]
    assert made["data"] is None or made["data"]["source"] == "sample"


def test_a_typo_in_metadata_is_one_line_under_plain_lm_eval(venv, models, tmp_path):
    done = venv.run("-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={models['causal']}", "--device",
                    "cpu", "--tasks", "long_rewardbench_pairwise_math", "--metadata", '{"data_dri": "sample"}',
                    "--limit", "1", cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("Long-RewardBench: ")]
    assert lines == ["Long-RewardBench: field '--metadata': unknown key 'data_dri'; did you mean 'data_dir'? known "
                     "keys: data_dir, data_revision, max_gen_toks, max_length, order, overlong, parser, protocol, "
                     "tokenizer"]


def test_verdict_loglikelihood_group(venv, models, tmp_path):
    results, samples, _ = _run_lm_eval(venv, tmp_path, "hf", f"pretrained={models['causal']},dtype=float32",
                                       "long_rewardbench_ll")
    _assert_paper_metrics(results, "long_rewardbench_ll", samples)


def test_reward_model_group_with_hf_rm(venv, models, tmp_path):
    results, samples, log = _run_lm_eval(
        venv, tmp_path, "hf-rm", f"pretrained={models['seq-cls']},dtype=float32,batch_size=2,share_prefix=true",
        "long_rewardbench_rm")
    _assert_paper_metrics(results, "long_rewardbench_rm", samples)
    summary = next(line for line in log.splitlines() if line.startswith("hf-rm: "))
    # Pairs of the sample share their whole context: every token is encoded once.
    assert float(summary.split("tokens processed / unique = ")[1].split()[0]) == pytest.approx(1.0, abs=0.01)
    scores = [resp[0] for p in samples for line in p.read_text().splitlines()
              for resp in json.loads(line)["filtered_resps"]]
    assert len(set(scores)) > 1  # real rewards came back, not placeholders


def test_longrm_eval_without_hook_refuses_a_generative_group_with_a_reward_model(venv, models, tmp_path):
    done = venv.run("-m", "longrm_tasks.cli", "eval", "--model", "hf-rm", "--model_args",
                    f"pretrained={models['seq-cls']}", "--device", "cpu", "--tasks", "long_rewardbench",
                    "--metadata", SAMPLE, "--limit", "2", hook=False, cwd=tmp_path)
    # lm-eval builds the model before the tasks: getting to the task's data loader shows `longrm eval`
    # registered hf-rm and found the task without the hook; the loader refuses before building any data.
    assert done.returncode != 0
    assert "is a scalar reward model" in done.stderr
    assert "--tasks long_rewardbench_rm" in done.stderr
