"""Long-RewardBench through RewardBench's own code, in an isolated environment that has it.

RewardBench pins transformers 4.51, so it cannot share our environment. Point
``LONGRM_REWARDBENCH_PYTHON`` at the Python of a venv made with::

    python3 -m venv "${TMPDIR:-/tmp}/longrm-rewardbench-venv"
    "${TMPDIR:-/tmp}/longrm-rewardbench-venv/bin/pip" install torch==2.13.0 rewardbench "setuptools<81"

(``setuptools<81``: rewardbench 0.1.4 imports ``pkg_resources``). Without it
these tests are skipped with that reason. Each test runs this file as a script
under that Python (the ``probe_*`` functions below) and checks what it prints.
Marked ``rewardbench_env``: they take ~10-40 s each (importing RewardBench).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest  # also imported when this file runs as a probe: rewardbench depends on pytest

# This file also runs as a script under RewardBench's Python, where tests/helpers is not on the path.
REPO = Path(__file__).resolve().parents[3]
RB_PYTHON = os.environ.get("LONGRM_REWARDBENCH_PYTHON")

pytestmark = [
    pytest.mark.rewardbench_env,
    pytest.mark.skipif(not RB_PYTHON, reason="LONGRM_REWARDBENCH_PYTHON is not set: no isolated environment "
                                             "with rewardbench (see this file's docstring to make one)"),
]


def _probe(name: str, *args: str, env: dict | None = None, check: bool = True, timeout: int = 600):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    full_env.pop("LONGRM_MAX_LENGTH", None)
    full_env.update(env or {})
    out = subprocess.run([RB_PYTHON, __file__, name, *args], capture_output=True, text=True, env=full_env,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"probe {name} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out


def _result(out) -> dict:
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# ---------------------------------------------------------------- tests (run by pytest, our venv)

def _export(tmp_path) -> Path:
    from longrm_tasks.cli import main

    out = tmp_path / "export"
    assert main(["rewardbench", "export", "--data", "sample", "--out", str(out)]) == 0
    return out


def test_exported_files_pass_rewardbench_loaders(tmp_path):
    out = _export(tmp_path)
    got = _result(_probe("loaders", str(out)))
    rb1 = [json.loads(x) for x in open(out / "rewardbench1.jsonl")]
    rb2 = [json.loads(x) for x in open(out / "rewardbench2.jsonl")]
    # RewardBench 1 (`load_and_process_dataset`, the `--dataset FILE --load_json` path): every pair,
    # in order, rendered as the whole conversation (the long context kept) with each answer last
    assert got["rb1_ids"] == [r["id"] for r in rb1]
    assert got["rb1_subsets"] == [r["subset"] for r in rb1]
    assert got["rb1_text_is_full_conversation"] == [True] * len(rb1)
    # RewardBench 2 (`load_bon_dataset_v2`, scripts/run_v2.py): one row per answer, chosen first
    assert got["rb2_total_completions"] == [r["total_completions"] for r in rb2]
    assert got["rb2_num_correct"] == [1] * len(rb2)
    assert got["rb2_rows"] == sum(r["total_completions"] for r in rb2)
    assert got["rb2_ids"] == [r["id"] for r in rb2 for _ in range(r["total_completions"])]
    assert got["rb2_text_has_prompt_and_answer"] is True


def test_our_bestofn_numbers_equal_reroll_and_score_dataset(tmp_path):
    import random

    from longrm_tasks.adapters.rewardbench.score import Scored, rewardbench2_result, score

    out = _export(tmp_path)
    rb2 = [json.loads(x) for x in open(out / "rewardbench2.jsonl")]
    rng = random.Random(7)
    scores = {r["id"]: [float(rng.randint(0, 2)) for _ in range(r["total_completions"])] for r in rb2}
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    theirs = _result(_probe("reroll", str(out), str(tmp_path / "scores.json")))
    ours = score([Scored(r["id"], r["subset"], scores[r["id"]][:1], scores[r["id"]][1:]) for r in rb2],
                 model="m").rewardbench
    assert [rewardbench2_result(scores[r["id"]]) for r in rb2] == pytest.approx(theirs["per_item"], abs=1e-12)
    for subset, value in theirs["per_subset"].items():
        assert ours[subset] == pytest.approx(value, abs=1e-12), subset
    assert set(ours) - {"model", "model_type", "chat_template"} == set(theirs["per_subset"])


def test_pair_rule_is_the_one_in_installed_rewardbench():
    # RewardBench 1's rule has no function of its own (it is inline in the CLI, which needs CUDA to run):
    # check that the line test_rewardbench_score.py (beside this file) transcribes is the installed one, word for
    # word.
    got = _result(_probe("rules"))
    assert got == {"rewardbench.rewardbench": True, "scripts.run_rm": True, "reroll_and_score_dataset": True}


def test_hook_registers_long_rewardbench_with_rewardbench_and_run_v2(tmp_path):
    out = _probe("hook", str(tmp_path), env={"LONGRM_MAX_LENGTH": "300"})
    got = _result(out)
    from longrm_tasks.data import load_benchmark

    items = load_benchmark("sample").items
    pairs = sum(it.tasktype == "PairWise" for it in items)
    answers = sum(it.n for it in items if it.tasktype == "BestOfN")
    assert got["hooked"] == [True, True]
    assert got["rb1_rows"] == pairs and got["rb1_max_tokens"] <= 300
    assert got["rb1_answers_whole"] is True and got["rb1_heads_kept"] is True
    assert got["rb2_rows"] == answers and got["rb2_max_tokens"] <= 300 and got["rb2_answers_whole"] is True
    assert f"[longrm] rewardbench: Long-RewardBench, {2 * pairs} texts, max_length 300" in out.stderr
    assert f"[longrm] run_v2: Long-RewardBench, {answers} texts, max_length 300" in out.stderr
    # run_v2's default --max_length (2048) becomes ours; an explicit one is kept
    assert got["run_v2_max_length"] == {"default": 131072, "explicit": 1000}
    # other datasets are left alone
    assert got["other_dataset_untouched"] is True


def _sample_sizes():
    from longrm_tasks.data import load_benchmark

    items = load_benchmark("sample").items
    return {"rewardbench": 2 * sum(it.tasktype == "PairWise" for it in items),
            "run_v2": sum(it.n for it in items if it.tasktype == "BestOfN")}


@pytest.mark.parametrize("tool", ["rewardbench", "run_v2"])
def test_rewardbench_tools_run_long_rewardbench(tmp_path, tool):
    out = _probe("cli", str(tmp_path), tool, check=False, timeout=900)
    texts = _sample_sizes()[tool]
    assert f"[longrm] {tool}: Long-RewardBench, {texts} texts, max_length 300" in out.stderr, out.stderr[-3000:]
    if out.returncode != 0:
        # rewardbench/models/pipeline.py sends every batch .to("cuda"): its tools cannot score on a CPU-only machine
        assert "CUDA" in out.stderr, out.stderr[-3000:]
        pytest.skip(f"RewardBench's pipeline needs CUDA; the dataset loading and truncation ran through {tool}")
    from longrm_tasks.cli import main

    res = tmp_path / "ours.json"
    if tool == "rewardbench":  # its summary has the overall accuracy: compare with ours, weighted by subset
        scores = tmp_path / "results" / "tiny_outputs.jsonl"
        assert main(["rewardbench", "score", "--scores", str(scores), "--json", str(res), "--quiet"]) == 0
        ours = json.loads(res.read_text())
        subsets = [json.loads(line)["subset"] for line in open(scores)]
        overall = sum(ours[k] for k in subsets) / len(subsets)
        summary = json.loads((tmp_path / "results" / "tiny.json").read_text())
        assert overall == pytest.approx(summary["accuracy"], abs=1e-12)
    else:  # run_v2 prints "subset: correct/total (value)" per subset and saves eval-set-scores/{model}.json
        scores = tmp_path / "results" / "eval-set-scores" / "tiny.json"
        assert main(["rewardbench", "score", "--scores", str(scores), "--json", str(res), "--quiet"]) == 0
        ours = json.loads(res.read_text())
        printed = {line.split(": ")[0]: float(line.rsplit("(", 1)[1].rstrip(")"))
                   for line in out.stdout.splitlines() if "/bon-" in line and line.endswith(")")}
        assert printed and all(ours[k] == pytest.approx(v, abs=1e-12) for k, v in printed.items())


# ---------------------------------------------------------------- probes (run in RewardBench's venv)

def _tokenizer():
    from longrm_tasks.testing import build_tokenizer

    return build_tokenizer()


def probe_loaders(export_dir: str) -> dict:
    import logging

    from rewardbench.utils import load_and_process_dataset, load_bon_dataset_v2

    tok = _tokenizer()
    rb1 = [json.loads(x) for x in open(Path(export_dir) / "rewardbench1.jsonl")]
    ds = load_and_process_dataset(str(Path(export_dir) / "rewardbench1.jsonl"), json=True, tokenizer=tok)
    full = [ds[i]["text_chosen"] == tok.apply_chat_template(r["chosen"], tokenize=False)
            and ds[i]["text_rejected"] == tok.apply_chat_template(r["rejected"], tokenize=False)
            and r["prompt"] in ds[i]["text_chosen"] for i, r in enumerate(rb1)]
    rb2 = [json.loads(x) for x in open(Path(export_dir) / "rewardbench2.jsonl")]
    data, subsets, total, correct = load_bon_dataset_v2(str(Path(export_dir) / "rewardbench2.jsonl"),
                                                        tokenizer=tok, logger=logging.getLogger("probe"))
    answers = [(r["prompt"], a) for r in rb2 for a in r["chosen"] + r["rejected"]]
    ok2 = all(p in t and t.rstrip().endswith(a + "<|im_end|>") for (p, a), t in zip(answers, data["text"]))
    return {"rb1_ids": list(ds["id"]), "rb1_subsets": list(ds["subset"]), "rb1_text_is_full_conversation": full,
            "rb2_rows": len(data), "rb2_ids": list(data["id"]), "rb2_total_completions": list(total),
            "rb2_num_correct": list(correct), "rb2_text_has_prompt_and_answer": ok2 and len(answers) == len(data)}


def probe_reroll(export_dir: str, scores_path: str) -> dict:
    """RewardBench 2's own scoring, fed exactly as scripts/run_v2.py feeds it."""
    import numpy as np
    from datasets import Dataset
    from rewardbench.utils import reroll_and_score_dataset

    rb2 = [json.loads(x) for x in open(Path(export_dir) / "rewardbench2.jsonl")]
    scores = json.loads(Path(scores_path).read_text())
    rows = {"text": [], "subset": [], "id": [], "scores": []}
    for r in rb2:
        for s in scores[r["id"]]:
            rows["text"].append("t"), rows["subset"].append(r["subset"]), rows["id"].append(r["id"])
            rows["scores"].append(s)
    out = reroll_and_score_dataset(Dataset.from_dict(rows), [r["total_completions"] for r in rb2],
                                   cols_to_combine=["text", "scores"])
    per = {}
    for subset in np.unique(rows["subset"]):  # run_v2.py: num_correct / num_total per present subset
        sub = out.filter(lambda ex: ex["subset"] == subset)
        per[str(subset)] = sum(sub["results"]) / len(sub["results"])
    return {"per_subset": per, "per_item": list(out["results"])}


def probe_rules() -> dict:
    import importlib.util
    import inspect

    from rewardbench.utils import reroll_and_score_dataset

    pair = "results.append(1) if chosen > rejected else results.append(0)"
    pair_script = ("results = [1 if chosen > rejected else 0 "
                   "for chosen, rejected in zip(scores_chosen, scores_rejected)]")
    source = lambda name: Path(importlib.util.find_spec(name).origin).read_text()  # noqa: E731
    bon = inspect.getsource(reroll_and_score_dataset)
    return {"rewardbench.rewardbench": pair in source("rewardbench.rewardbench"),
            "scripts.run_rm": pair in source("scripts.run_rm") and pair_script in source("scripts.run_rm"),
            "reroll_and_score_dataset": "max_val = np.max(scores)" in bon and
            'new_row["results"] = (1 / np.sum(scores == max_val)) if scores[0] == max_val else 0' in bon}


def probe_hook(workdir: str) -> dict:
    import logging

    from longrm_tasks.adapters.rewardbench import hook

    assert hook.activate()
    import rewardbench.rewardbench as cli  # patched on import
    import scripts.run_v2 as v2

    tok = _tokenizer()
    n_tokens = lambda t: len(tok(t)["input_ids"])  # noqa: E731
    ds = cli.load_and_process_dataset("long-rewardbench:sample", split="train", json=False, tokenizer=tok)
    rb1_whole = all(t.endswith(f"{a}<|im_end|>\n") for t, a in zip(ds["text_chosen"], ds["chosen"])) and all(
        t.endswith(f"{a}<|im_end|>\n") for t, a in zip(ds["text_rejected"], ds["rejected"]))
    heads = all(t.startswith("<|im_start|>user\nYou are a helpful assistant") for t in ds["text_chosen"])
    data, subsets, total, correct = v2.load_bon_dataset_v2("long-rewardbench:sample", tokenizer=tok,
                                                           logger=logging.getLogger("probe"))
    lengths = {}
    os.environ.pop("LONGRM_MAX_LENGTH")
    hook._state["max_length"] = None
    for key, extra in (("default", []), ("explicit", ["--max_length", "1000"])):
        sys.argv = ["run_v2", "--model", "m", "--dataset", "long-rewardbench:sample", *extra]
        lengths[key] = v2.get_args().max_length
    sys.argv = ["run_v2", "--model", "m", "--dataset", "allenai/reward-bench-2"]
    untouched = v2.get_args().max_length == 2048
    return {"hooked": [getattr(cli, "_longrm_hooked", False), getattr(v2, "_longrm_hooked", False)],
            "rb1_rows": len(ds),
            "rb1_max_tokens": max(map(n_tokens, list(ds["text_chosen"]) + list(ds["text_rejected"]))),
            "rb1_answers_whole": rb1_whole, "rb1_heads_kept": heads,
            "rb2_rows": len(data), "rb2_max_tokens": max(map(n_tokens, data["text"])),
            "rb2_answers_whole": all(t.endswith("<|im_end|>\n") for t in data["text"]),
            "run_v2_max_length": lengths, "other_dataset_untouched": untouched}


def probe_cli(workdir: str, tool: str) -> dict:
    """RewardBench's own tools (through the hook's runner) on a tiny random reward model."""
    from longrm_tasks.testing import save_tiny_model

    save_tiny_model(Path(workdir) / "tiny", kind="seq-cls", hidden=32, layers=1)
    os.chdir(workdir)
    from longrm_tasks.adapters.rewardbench.hook import main

    common = ["--model", "tiny", "--dataset", "long-rewardbench:sample", "--max_length", "300", "--batch_size", "8",
              "--torch_dtype", "float32"]
    extra = ["--not_quantized", "--output_dir", "results/"] if tool == "rewardbench" else ["--do_not_save"]
    return {"rc": main([tool, *common, *extra])}


if __name__ == "__main__":
    result = globals()[f"probe_{sys.argv[1]}"](*sys.argv[2:])
    print("RESULT " + json.dumps(result))
