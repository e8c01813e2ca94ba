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

from longrm_tasks.adapters.lm_eval.plugin import register_models  # noqa: E402
from longrm_tasks.adapters.lm_eval.rm import HFRewardModel, group_requests  # noqa: E402
from longrm_tasks.requests.reward import encode_rm_context  # noqa: E402
from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.testing import save_tiny_model  # noqa: E402

from project import TASK_DIR as TASK_YAMLS  # noqa: E402
import project  # noqa: E402  (tests/helpers/project.py: the repository's files)
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
    from longrm_tasks.requests.reward import decode_rm_context

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


# -- checkpoints hf-rm cannot score: one line each, before anything heavy loads --------------------

@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma"])
def test_a_causal_lm_checkpoint_is_refused_naming_the_judge_groups(tmp_path, arch, capsys):
    path = save_tiny_model(tmp_path / arch, kind="causal", arch=arch, hidden=32, layers=1)
    with pytest.raises(InputError) as err:
        HFRewardModel(pretrained=str(path), device="cpu")
    message = str(err.value)
    assert len(message.splitlines()) == 1
    # under plain lm_eval the exception then runs through lm-eval's frames: the line comes first
    assert capsys.readouterr().err.splitlines()[-1] == f"hf-rm: error: {message}"
    assert "causal language model" in message and "long_rewardbench_ll" in message and "long_rewardbench " in message
    assert str(path) in message


def test_a_missing_model_folder_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no such model folder"):
        HFRewardModel(pretrained=str(tmp_path / "absent"), device="cpu")


def test_a_multi_label_classifier_is_refused(tmp_path):
    path = save_tiny_model(tmp_path / "cls", kind="seq-cls", arch="qwen2", hidden=32, layers=1, num_labels=3)
    with pytest.raises(InputError, match="a classifier with 3 outputs, not a scalar reward model"):
        HFRewardModel(pretrained=str(path), device="cpu")


def test_a_tokenizer_without_chat_template_is_one_line(rm_path, tmp_path):
    tok = AutoTokenizer.from_pretrained(rm_path)
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "plain")
    with pytest.raises(InputError) as err:
        HFRewardModel(pretrained=str(rm_path), tokenizer=str(tmp_path / "plain"), device="cpu")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "has no chat template" in message and "field 'tokenizer'" in message


# -- one model over several devices (accelerate's big-model loading) ------------------------------

def test_parallelize_spreads_the_model_and_scores_the_same(tmp_path, capsys):
    """With a CPU budget too small for the model, accelerate puts layers on disk and its hooks move
    weights and activations: the same path a model split over several GPUs takes."""
    path = save_tiny_model(tmp_path / "rm4", kind="seq-cls", arch="llama", hidden=64, layers=4)
    requests = _requests()
    whole = HFRewardModel(pretrained=str(path), device="cpu", dtype="float32")
    split = HFRewardModel(pretrained=str(path), device="cpu", dtype="float32", parallelize=True,
                          max_cpu_memory="300KB", offload_folder=str(tmp_path / "offload"))
    placement = set(split.scorer.model.hf_device_map.values())
    assert {"cpu", "disk"} <= placement, placement
    assert [s for s, _ in split.loglikelihood(requests)] == pytest.approx(
        [s for s, _ in whole.loglikelihood(requests)], abs=1e-5)


def test_model_parallel_args_follow_lm_evals_hf_model():
    from longrm_tasks.adapters.lm_eval.rm import model_parallel_args

    common = dict(max_cpu_memory=None, offload_folder="off", device_map=None)
    assert model_parallel_args(parallelize=False, max_memory_per_gpu=None, gpus=8, local_rank=0,
                               local_processes=1, **common) == {}
    one = model_parallel_args(parallelize=True, max_memory_per_gpu="70GiB", gpus=4, local_rank=0,
                              local_processes=1, **common)
    assert one == {"device_map": "auto", "max_memory": {0: "70GiB", 1: "70GiB", 2: "70GiB", 3: "70GiB"},
                   "offload_folder": "off"}
    # accelerate launch with 2 processes on 8 GPUs: each process spreads its copy over its 4 GPUs
    second = model_parallel_args(parallelize=True, max_memory_per_gpu="70GiB", gpus=8, local_rank=1,
                                 local_processes=2, **common)
    assert sorted(second["max_memory"]) == [1, 3, 5, 7]
    explicit = model_parallel_args(parallelize=False, max_memory_per_gpu=None, gpus=0, local_rank=0,
                                   local_processes=1, **dict(common, device_map="sequential", max_cpu_memory="8GiB"))
    assert explicit == {"device_map": "sequential", "max_memory": {"cpu": "8GiB"}, "offload_folder": "off"}


# -- registration: one table, the same targets as the entry points ---------------------------------

def test_models_are_registered_from_one_table_matching_the_entry_points():
    import re

    from longrm_tasks.adapters.lm_eval.plugin import MODEL_TARGETS

    # (tomllib is Python >= 3.11; the section is plain `name = "module:Class"` lines)
    text = (project.ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split('[project.entry-points."lm_eval.models"]', 1)[1].split("\n[", 1)[0]
    declared = dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', section, flags=re.M))
    assert declared, "no lm_eval.models entry points in pyproject.toml"
    assert declared == MODEL_TARGETS  # the entry points and the hook's lazy placeholders name the same classes
    register_models(lm_eval.api.registry)
    for name in MODEL_TARGETS:
        assert name in lm_eval.api.registry.model_registry
    assert get_model("hf-rm") is HFRewardModel


# -- the task's protocol decides the over-long rule (requests.reward `protocol`) -----------------------

def _protocol_requests(protocol):
    per_item = [[(encode_rm_context(messages, key, protocol), c) for c in candidates]
                for key, (messages, candidates) in ITEMS.items()]
    return [Instance("loglikelihood", doc={}, arguments=args, idx=i)
            for i, args in enumerate(per_item[0] + per_item[1])]


def test_paper_protocol_cuts_a_candidate_over_131072_tokens_like_the_reference(rm_path):
    """The reference (Long-RM ``LongRewardBenchDisRMPreprocess``): prompt + assistant turn through the chat
    template, >= 131,072 tokens keep ids[:65536] + ids[5 - 65536:]. What hf-rm hands its scorer is checked
    (running a 131K-token forward on CPU takes minutes)."""
    from longrm_tasks.context.fitting import paper_span
    from longrm_tasks.rm.formatting import chat_token_ids, common_prefix_length
    from longrm_tasks.context.truncation import PAPER_HEAD, PAPER_TAIL

    context = "HEAD-MARK " + " ".join(f"word{i}" for i in range(15_000)) + " Question: what?"
    messages = [{"role": "user", "content": context}]
    answers = ["Yes, 42.", "No, it is 41 according to the text."]
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=200_000, progress=False)
    full = [chat_token_ids(lm.scorer.tokenizer, messages + [{"role": "assistant", "content": a}]) for a in answers]
    assert 131_072 <= min(map(len, full)) and max(map(len, full)) < 200_000

    [paper], _ = group_requests([(encode_rm_context(messages, "LongQA/9", "paper"), a) for a in answers])
    cut = lm.scorer.format(paper)
    assert cut.input_ids == [ids[:PAPER_HEAD] + ids[-PAPER_TAIL:] for ids in full]
    assert cut.input_ids == [paper_span(len(ids)).apply(ids) for ids in full]  # the fitting module's rule
    assert cut.dropped_tokens == max(map(len, full)) - PAPER_HEAD - PAPER_TAIL and not cut.skipped
    # Cut one by one, the candidates still share the 65,536-token head: the shared-prefix scorer encodes
    # that once and each candidate's own tail in full (nothing to fall back to).
    assert common_prefix_length(cut.input_ids) >= PAPER_HEAD

    # fit (and requests of earlier versions): the model arg's policy; here the item fits whole.
    for protocol in ("fit", None):
        [item], _ = group_requests([(encode_rm_context(messages, "LongQA/9", protocol), a) for a in answers])
        assert lm.scorer.format(item).input_ids == full


def test_paper_item_beyond_max_length_is_scored_wrong_and_counted(rm_path, capsys):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=64, progress=False)
    scores = [s for s, _ in lm.loglikelihood(_protocol_requests("paper"))]
    long_item, short_item = scores[:3], scores[3:]
    assert long_item == [float("-inf")] * 3  # requests.reward.OVERLONG_SCORE: never cut to fit, never scored
    assert all(math.isfinite(s) for s in short_item)
    err = capsys.readouterr().err
    assert "over-long 1 items (scored wrong)" in err and "skipped 0 items" in err and "truncated 0 items" in err

    # fit: today's behaviour (truncation=middle): the middle of the context is dropped, every answer kept.
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=128, progress=False)
    assert all(math.isfinite(s) for s, _ in lm.loglikelihood(_protocol_requests("fit")))
    err = capsys.readouterr().err
    assert "truncated 1 items" in err and "over-long 0 items" in err


def test_a_truncation_arg_yields_to_the_paper_protocol_said_once(rm_path, capsys):
    lm = HFRewardModel(pretrained=str(rm_path), device="cpu", max_length=64, truncation="middle", progress=False)
    first = [s for s, _ in lm.loglikelihood(_protocol_requests("paper"))]
    lm.loglikelihood(_protocol_requests("paper"))
    err = capsys.readouterr().err
    assert first[:3] == [float("-inf")] * 3  # not middle-cut: the paper protocol decides
    assert err.count("truncation=middle does not apply: the task's protocol is 'paper'") == 1
    # under fit the same argument applies: the long item is cut to fit, not refused
    assert all(math.isfinite(s) for s, _ in lm.loglikelihood(_protocol_requests("fit"))[:3])


def test_overlong_reaches_the_metrics_through_lm_eval(tmp_path):
    """The task measured the prompts against a larger context than hf-rm has (e.g. --metadata max_length
    above the model's): hf-rm finds the over-long items itself; they score 0 and land in extra/overlong."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from longrm_tasks.rm.formatting import format_item

    register_models(lm_eval.api.registry)
    path = save_tiny_model(tmp_path / "rm", kind="seq-cls", arch="llama", hidden=16, layers=1, max_positions=4096)
    meta = {"pretrained": str(path), "data_dir": "sample", "max_length": 1 << 20}  # task: everything fits
    res = simple_evaluate(model="hf-rm", model_args={"pretrained": str(path), "max_length": 1000, "progress": False},
                          tasks=["long_rewardbench_rm_code"], device="cpu", log_samples=True,
                          task_manager=TaskManager(include_path=str(TASK_YAMLS), include_defaults=False, metadata=meta))
    samples = res["samples"]["long_rewardbench_rm_code"]
    tok = AutoTokenizer.from_pretrained(path)
    beyond = set()
    for s in samples:
        doc = s["doc"]
        assert not doc["overlong"]  # the task did not see it: hf-rm did
        formatted = format_item(tok, {"prompt_template": json_messages(doc["prompt"]), "candidates": doc["choices"]},
                                max_length=1000, truncation="paper")
        if formatted.overlong:
            beyond.add(doc["key"])
            assert s["AVG"]["overlong"] and s["AVG"]["predicted"] is None
        else:
            assert not s["AVG"]["overlong"] and s["AVG"]["predicted"] is not None
    assert beyond and len(beyond) < len(samples)
    metrics = res["results"]["long_rewardbench_rm_code"]
    assert metrics["extra/overlong,none"] == len(beyond)
    assert metrics["extra/unparsed_rate,none"] == 0  # over-long is not "unparsed"


def json_messages(context: str) -> list[dict]:
    from longrm_tasks.requests.reward import decode_rm_context

    return decode_rm_context(context)["messages"]


@pytest.mark.parametrize("arch", ["gemma3", "gemma2", "mistral"])
def test_sliding_window_classifiers_share_the_context_and_match_the_unshared_rewards(arch, tmp_path, caplog,
                                                                                      capsys):
    """Sliding layers (window 16 tokens, far inside the ~400-token context) and soft-capping (Gemma 2)."""
    path = save_tiny_model(tmp_path / arch, kind="seq-cls", arch=arch, hidden=32, layers=2)
    requests = _requests()
    register_models(lm_eval.api.registry)
    scores = {}
    for share in ("true", "false"):
        with caplog.at_level("WARNING"):
            lm = get_model("hf-rm").create_from_arg_string(
                f"pretrained={path},dtype=float32,batch_size=4,share_prefix={share}",
                {"batch_size": 1, "max_batch_size": None, "device": "cpu"})
            scores[share] = [s for s, _ in lm.loglikelihood(requests)]
        summary = capsys.readouterr().err
        if share == "true":
            assert lm.scorer.share_prefix and "shared-prefix scoring is off" not in caplog.text
            assert float(summary.split("unique = ")[1].split()[0]) == pytest.approx(1.0, abs=1e-3)
    assert scores["true"] == pytest.approx(scores["false"], abs=1e-4)
    assert scores["true"] == pytest.approx(_reference_scores(path, requests), abs=1e-4)
