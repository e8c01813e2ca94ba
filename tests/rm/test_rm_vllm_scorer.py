"""The vLLM scorer's request planning and result mapping (vLLM itself needs a GPU machine)."""
import importlib.util
import types

import pytest

from longrm_tasks.rm.formatting import FormattedItem
from longrm_tasks.rm.prefix_scorer import token_ratio
from longrm_tasks.rm.vllm_scorer import VLLMRewardScorer, collect_scores, plan_waves, token_prompts


def item(*lengths, shared=100, skip=False):
    if skip:
        return FormattedItem([], list(lengths), skip_reason="too long")
    return FormattedItem([list(range(shared)) + [1000 + k] * (n - shared) for k, n in enumerate(lengths)],
                         list(lengths))


def test_first_candidates_run_before_the_rest_within_a_token_budget():
    items = [item(120, 130), item(150, 110, 105, 140), item(1, skip=True), item(300, 310)]
    waves = plan_waves(items, token_budget=300)
    assert waves == [
        [(0, 0), (1, 0)], [(0, 1), (1, 1), (1, 2), (1, 3)],  # 130 + 150 tokens fit in 300
        [(3, 0)], [(3, 1)],  # an item over the budget still gets its own waves
    ]
    prompts = token_prompts(items, waves[0])
    assert prompts == [{"prompt_token_ids": items[0].input_ids[0]}, {"prompt_token_ids": items[1].input_ids[0]}]


def test_single_candidate_items_need_one_wave():
    assert plan_waves([item(120), item(130)], token_budget=10_000) == [[(0, 0), (1, 0)]]


def test_results_map_back_to_items_with_vllm_token_counts():
    items = [item(120, 130), item(1, skip=True)]
    # What vLLM reports: the first candidate computes everything, the second reuses the cached prefix.
    results = {(0, 0): (0.5, 120), (0, 1): (-1.25, 30)}
    scored, skipped = collect_scores(items, results)
    assert scored.scores == [0.5, -1.25] and scored.unique_tokens == 150 and scored.tokens_processed == 150
    assert skipped.skipped and skipped.skip_reason == "too long"
    assert token_ratio([scored, skipped]) == 1.0




# -- engine arguments: what `--model vllm-rm --model_args ...` hands to vllm.LLM ------------------

def test_engine_args_for_one_process_pass_the_parallel_and_length_options_through():
    from longrm_tasks.rm.vllm_scorer import pooling_engine_args

    args = pooling_engine_args("org/rm", tensor_parallel_size=2, max_model_len=131072, dtype="bfloat16",
                               gpu_memory_utilization=0.85)
    assert args == {"model": "org/rm", "runner": "pooling", "dtype": "bfloat16", "max_model_len": 131072,
                    "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85, "enable_prefix_caching": True,
                    "trust_remote_code": False, "seed": 0}


def test_data_parallel_means_one_engine_per_launched_process():
    from longrm_tasks.errors import InputError
    from longrm_tasks.rm.vllm_scorer import pooling_engine_args

    args = pooling_engine_args("org/rm", data_parallel_size=4, world_size=4)
    assert args["data_parallel_size"] == 4 and args["distributed_executor_backend"] == "external_launcher"
    assert pooling_engine_args("org/rm", world_size=2)["data_parallel_size"] == 2  # launched = asked
    with pytest.raises(InputError, match="torchrun --nproc-per-node=4"):
        pooling_engine_args("org/rm", data_parallel_size=4)  # one process cannot hold 4 engines
    with pytest.raises(InputError, match="but 2 processes were launched"):
        pooling_engine_args("org/rm", data_parallel_size=4, world_size=2)
    with pytest.raises(InputError, match="tensor_parallel_size=1"):
        pooling_engine_args("org/rm", tensor_parallel_size=2, world_size=2)


# -- the lm-eval model without vLLM ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from longrm_tasks.testing import save_tiny_model

    root = tmp_path_factory.mktemp("vllm-rm")
    return {"rm": save_tiny_model(root / "rm", kind="seq-cls", arch="qwen3", hidden=32, layers=1),
            "causal": save_tiny_model(root / "lm", kind="causal", arch="qwen3", hidden=32, layers=1)}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_rm_without_vllm_says_how_to_install_it(tiny):
    pytest.importorskip("lm_eval")
    from longrm_tasks.adapters.lm_eval.vllm_rm import VLLMRewardModel

    with pytest.raises(ImportError, match="longrm-tasks\\[vllm\\]"):
        VLLMRewardModel(pretrained=str(tiny["rm"]), tensor_parallel_size=1)


def test_vllm_rm_refuses_a_causal_lm_before_starting_vllm(tiny):
    pytest.importorskip("lm_eval")
    from longrm_tasks.adapters.lm_eval.vllm_rm import VLLMRewardModel
    from longrm_tasks.errors import InputError

    with pytest.raises(InputError, match="causal language model.*long_rewardbench_ll"):
        VLLMRewardModel(pretrained=str(tiny["causal"]))
    with pytest.raises(InputError, match="did you mean 'tensor_parallel_size'"):
        VLLMRewardModel(pretrained=str(tiny["rm"]), tensor_paralel_size=2)


class StandInPoolingLLM:
    """NOT vLLM (it cannot be installed here): a stand-in with the one method the scorer calls,
    ``LLM.encode(prompts, pooling_task=, pooling_params=, use_tqdm=)``.

    Rewards are real: a transformers reward model runs each token prompt in full.
    ``num_cached_tokens`` follows vLLM's automatic prefix caching: the whole
    16-token blocks a prompt shares with a prompt of an *earlier* call (blocks are
    reused once computed, not within the batch that computes them).
    """

    BLOCK = 16

    def __init__(self, model):
        self.model = model
        self.calls = []
        self._computed: list[list[int]] = []

    def encode(self, prompts, *, pooling_task, pooling_params, use_tqdm):
        import torch

        from longrm_tasks.rm.formatting import common_prefix_length

        assert pooling_task == "classify" and use_tqdm is False
        self.calls.append((prompts, pooling_params))
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.no_grad():
                reward = self.model(input_ids=torch.tensor([ids])).logits[0]
            shared = max((common_prefix_length([ids, seen]) for seen in self._computed), default=0)
            cached = min(shared, len(ids) - 1) // self.BLOCK * self.BLOCK
            outputs.append(types.SimpleNamespace(outputs=types.SimpleNamespace(data=reward),
                                                 prompt_token_ids=ids, num_cached_tokens=cached))
        self._computed += [p["prompt_token_ids"] for p in prompts]
        return outputs


def test_vllm_rm_maps_requests_to_rewards_like_hf_rm(tiny, capsys):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from longrm_tasks.adapters.lm_eval.rm import HFRewardModel
    from longrm_tasks.adapters.lm_eval.vllm_rm import VLLMRewardModel
    from longrm_tasks.requests.reward import encode_rm_context

    context = "A long report on rivers and their floods. " * 30
    items = {"LongQA/1": ([{"role": "user", "content": context + "Which river floods?"}],
                          ["The Nile.", "None.", "All."]),
             "Math/2": ([{"role": "user", "content": "2 + 2?"}], ["4", "5"])}
    args = [(encode_rm_context(m, key), c) for key, (m, cands) in items.items() for c in cands]
    requests = [Instance("loglikelihood", {}, a, i) for i, a in enumerate(args[::-1])]  # any order

    engine = StandInPoolingLLM(AutoModelForSequenceClassification.from_pretrained(tiny["rm"]).eval())
    raw = object()  # stands for vllm.PoolingParams(use_activation=False); passed through untouched
    scorer = VLLMRewardScorer(engine, AutoTokenizer.from_pretrained(tiny["rm"]), pooling_params=raw)
    lm = VLLMRewardModel(pretrained=scorer)
    got = [s for s, _ in lm.loglikelihood(requests)]
    want = [s for s, _ in HFRewardModel(pretrained=str(tiny["rm"]), device="cpu", dtype="float32",
                                        share_prefix=False).loglikelihood(requests)]
    assert got == pytest.approx(want, abs=1e-5)
    # first candidates of every item in the first call, the rest after (so they find the cached context)
    assert len(engine.calls) == 2 and all(params is raw for _, params in engine.calls)
    assert len(engine.calls[0][0]) == 2 and len(engine.calls[1][0]) == 3
    summary = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vllm-rm: ")]
    assert summary and "2 items scored" in summary[-1] and "forward passes" not in summary[-1]
    ratio = float(summary[-1].split("unique = ")[1].split()[0])
    assert 1.0 <= ratio < 1.2  # the long context was computed once, up to block rounding
