"""`hf-rm` in process: lm-eval requests in, the reward model's own scores out."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

import lm_eval.api.registry  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from longrm_tasks.adapters.lm_eval_plugin import register_models  # noqa: E402
from longrm_tasks.adapters.lm_eval_rm import HFRewardModel, group_requests  # noqa: E402
from longrm_tasks.adapters.rm_requests import encode_rm_context  # noqa: E402
from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.testing import save_tiny_model  # noqa: E402

CONTEXT = "A long document about foxes and dogs. " * 40
ITEMS = {
    "LongQA/1": ([{"role": "user", "content": CONTEXT + "Which animal jumps?"}],
                 ["The quick brown fox.", "The lazy dog.", "Neither of them, 1000 times."]),
    "Code/7": ([{"role": "system", "content": "Judge answers."}, {"role": "user", "content": "2 + 2?"}],
               ["4", "5"]),
}


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("rm"), kind="seq-cls", arch="qwen2", hidden=32, layers=2)


def _requests():
    """Requests of both items, interleaved, as lm-eval's evaluator may hand them over."""
    per_item = [[(encode_rm_context(messages, key), c) for c in candidates]
                for key, (messages, candidates) in ITEMS.items()]
    order = [per_item[0][0], per_item[1][0], per_item[0][1], per_item[1][1], per_item[0][2]]
    return [Instance("loglikelihood", doc={}, arguments=args, idx=i) for i, args in enumerate(order)]


def _reference_scores(path, requests):
    """Each candidate alone, one plain forward pass over its full chat (the reference protocol)."""
    from longrm_tasks.adapters.rm_requests import decode_rm_context

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    for req in requests:
        context, answer = req.args
        chat = decode_rm_context(context)["messages"] + [{"role": "assistant", "content": answer}]
        ids = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
        with torch.no_grad():
            out.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
    return out


@pytest.mark.parametrize("share_prefix", ["true", "false"])
def test_scores_match_a_plain_forward_per_candidate(rm_path, share_prefix, capsys):
    requests = _requests()
    register_models(lm_eval.api.registry)  # what the start-up hook / `longrm eval` do (no-op when done)
    lm = get_model("hf-rm").create_from_arg_string(
        f"pretrained={rm_path},dtype=float32,batch_size=2,share_prefix={share_prefix}",
        {"batch_size": 1, "max_batch_size": None, "device": "cuda:0"})  # what lm-eval's CLI passes
    results = lm.loglikelihood(requests)
    assert [greedy for _, greedy in results] == [False] * len(requests)
    assert [s for s, _ in results] == pytest.approx(_reference_scores(rm_path, requests), abs=1e-4)
    assert lm.scorer.batch_size == 2  # --model_args beats the CLI's default --batch_size
    summary = capsys.readouterr().err
    assert "hf-rm: 2 items scored; tokens processed / unique = " in summary
    ratio = float(summary.split("unique = ")[1].split()[0])
    # Shared prefix: each token once; unshared: the 3-candidate item repeats its long context.
    if share_prefix == "true":
        assert ratio == pytest.approx(1.0, abs=1e-3)
    else:
        assert ratio > 2.0


def test_requests_are_grouped_per_item_in_first_seen_order():
    items, slots = group_requests([r.args for r in _requests()])
    assert [item.id for item in items] == ["LongQA/1", "Code/7"]
    assert [item.candidates for item in items] == [ITEMS["LongQA/1"][1], ITEMS["Code/7"][1]]
    assert slots == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]


def test_over_long_items_are_skipped_with_nan_when_asked(rm_path, capsys):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=64, truncation="skip")
    results = lm.loglikelihood(_requests())
    scores = [s for s, _ in results]
    long_item = [0, 2, 4]  # positions of the LongQA/1 requests
    assert all(math.isnan(scores[i]) for i in long_item)
    assert not any(math.isnan(s) for i, s in enumerate(scores) if i not in long_item)
    assert "skipped 1 items" in capsys.readouterr().err


def test_middle_truncation_is_counted(rm_path, capsys):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=128)
    lm.loglikelihood(_requests())
    err = capsys.readouterr().err
    assert "truncated 1 items" in err and "skipped 0 items" in err


def test_generation_and_plain_text_fail_naming_the_rm_group(rm_path):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu")
    with pytest.raises(ValueError, match="long_rewardbench_rm"):
        lm.generate_until([Instance("generate_until", {}, ("Judge this.", {"until": ["\n"]}), 0)])
    with pytest.raises(ValueError, match="long_rewardbench_rm"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("Question: 2+2?", " 4"), 0)])


def test_chat_template_leaves_our_requests_alone(rm_path):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu")
    context = encode_rm_context([{"role": "user", "content": "hi"}], "Math/1")
    assert lm.apply_chat_template([{"role": "user", "content": context}]) == context
    rendered = lm.apply_chat_template([{"role": "user", "content": "hi"}])
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert lm.tokenizer_name == str(rm_path).replace("/", "__")


def test_unknown_model_args_are_rejected_with_the_closest_name(rm_path):
    with pytest.raises(InputError, match="unknown hf-rm model arg 'temperature'"):
        HFRewardModel(pretrained=str(rm_path), device="cpu", temperature=0.5)
    with pytest.raises(InputError, match="'share_prefx' \\(did you mean 'share_prefix'"):
        HFRewardModel(pretrained=str(rm_path), device="cpu", share_prefx=False)
