"""Long-RewardBench lm-eval tasks: YAMLs, options, prompt fitting, and real lm-eval runs on a tiny model."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from longrm_tasks.adapters.lm_eval.options import parse_options  # noqa: E402
from longrm_tasks.context.fitting import FitStats, Overlong, Protocol  # noqa: E402
from longrm_tasks.context.fitting import MARGIN, Fitting  # noqa: E402
from longrm_tasks.requests.build import build_judge_docs, build_rm_docs  # noqa: E402
from longrm_tasks.adapters.lm_eval.tasks import load_dataset  # noqa: E402
from longrm_tasks.requests.reward import decode_rm_context, encode_rm_context  # noqa: E402
from longrm_tasks.data import load_benchmark, select  # noqa: E402
from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.prompts.orders import OrderScheme  # noqa: E402
from longrm_tasks.prompts.judge_prompts import judge_messages, render_chat  # noqa: E402
from longrm_tasks.testing import build_tokenizer, save_tiny_model  # noqa: E402

from project import TASK_DIR  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def items():
    return load_benchmark("sample").items


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "causal", hidden=32, layers=1, max_positions=4096)


def _manager(metadata):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=metadata)


def _generator():
    spec = importlib.util.spec_from_file_location("_generate_yamls", TASK_DIR / "_generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_yamls_are_what_the_generator_writes():
    gen = _generator()
    for suffix, (judge, base, description) in gen.JUDGES.items():
        group = f"long_rewardbench{suffix}"
        expected = {f"{group}.yaml": gen.group_yaml(group, description)}
        for name_suffix, tasktypes, configs, alias in gen.slices():
            expected[f"{group}{name_suffix}.yaml"] = gen.task_yaml(group + name_suffix, base, judge, tasktypes,
                                                                   configs, alias)
        on_disk = {p.name: p.read_text(encoding="utf-8") for p in (TASK_DIR / group).glob("*.yaml")}
        assert on_disk == expected, f"rerun python task_yamls/_generate.py ({group} is stale)"


def test_naming_scheme_groups_and_slices():
    tm = _manager({})
    names = set(tm.all_tasks)
    for judge in ("", "_ll", "_rm"):
        group = f"long_rewardbench{judge}"
        assert group in tm.all_groups
        assert {f"{group}_all", f"{group}_pairwise", f"{group}_bon", f"{group}_longqa",
                f"{group}_pairwise_safety", f"{group}_bon_cite"} <= names
        assert f"{group}_bon_safety" not in names  # Safety and Math have no Best-of-N items
    slices = [n for n in names if n.startswith("long_rewardbench")]
    assert len(slices) == 3 * 23  # 3 groups + 3 x 22 slice tasks


def test_pair_and_rm_slices_list_only_their_metrics():
    gen = _generator()
    pair = {m.name for m in gen.metrics_for(["PairWise"], ["Math"])}
    assert {"AVG", "Math", "PairWise Avg", "Same", "4k", "Length Avg"} <= pair
    assert not pair & {"Rank Avg", "LongQA", "extra/bestofn_top1"}
    bon = {m.name for m in gen.metrics_for(["BestOfN"], None)}
    assert {"Rank2", "Rank Avg", "extra/bestofn_exact_match"} <= bon and "PairWise Avg" not in bon


def test_rm_request_contract_round_trip():
    messages = [{"role": "user", "content": 'ctx with "quotes" and ünïcode'}]
    decoded = decode_rm_context(encode_rm_context(messages, "LongQA/7"))
    assert decoded == {"messages": messages, "item": "LongQA/7", "protocol": None}
    assert decode_rm_context(encode_rm_context(messages, "LongQA/7", "paper"))["protocol"] == "paper"
    assert decode_rm_context("a plain prompt") is None
    with pytest.raises(ValueError):
        decode_rm_context('{"longrm_rm": 99, "messages": []}')


def test_prompt_is_exactly_the_chat_render_and_both_orders_reverse(tokenizer, items):
    chosen = select(items, configs=["Cite"])[:4]
    docs = build_judge_docs(chosen, OrderScheme.parse("both").orders_for, judge="generative", tokenizer=tokenizer,
                            fitting=Fitting(Protocol.FIT, None, 2048))
    assert len(docs) == 2 * len(chosen)
    for first, second in zip(docs[::2], docs[1::2]):
        assert second["order"] == first["order"][::-1] and first["key"] == second["key"]
    for doc, item in zip(docs, [it for it in chosen for _ in range(2)]):
        messages = judge_messages(item, doc["order"])
        assert doc["prompt"] == render_chat(tokenizer, messages)
        start, end = doc["user_span"]
        assert doc["prompt"][start:end] == messages[1]["content"]
        assert doc["prompt_tokens"] == len(tokenizer(doc["prompt"], add_special_tokens=False)["input_ids"])
        assert doc["truncated_tokens"] == 0 and not doc["skipped"]


def test_truncation_keeps_instructions_context_start_and_answers(tokenizer, items):
    item = max(items, key=lambda it: len(it.judge_question))
    max_length, reserve = 900, 64
    stats = FitStats()
    [doc] = build_judge_docs([item], OrderScheme.parse("paper").orders_for, judge="generative",
                             tokenizer=tokenizer, fitting=Fitting(Protocol.FIT, max_length, reserve), stats=stats)
    full = render_chat(tokenizer, judge_messages(item, doc["order"]))
    full_tokens = len(tokenizer(full, add_special_tokens=False)["input_ids"])
    kept = len(tokenizer(doc["prompt"], add_special_tokens=False)["input_ids"])
    assert full_tokens > max_length and kept <= max_length - reserve
    assert abs((full_tokens - kept) - doc["truncated_tokens"]) <= MARGIN
    # The beginning survives: the judge instructions and the first words of the context ...
    question_at = full.index("[User Question]\n") + len("[User Question]\n")
    assert doc["prompt"].startswith(full[:question_at + 40])
    # ... and so does everything after the question: every answer and the generation prompt.
    answers_at = full.index("[The Start of Assistant A's Answer]")
    assert doc["prompt"].endswith(full[answers_at - 20:])
    assert stats.truncated == 1 and stats.tokens_dropped == doc["truncated_tokens"]


def test_cut_without_offsets_decodes_the_kept_tokens(tokenizer):
    from longrm_tasks.requests.build import Measurer

    measurer = Measurer(tokenizer)
    measurer.backend = None  # the path for tokenizers without a Rust backend (no character offsets)
    text = "alpha beta gamma delta epsilon zeta eta theta"
    [head] = measurer.measure([text], keep=lambda n: True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert head.count == len(ids)
    assert head.without(2, 5) == tokenizer.decode(ids[:2]) + tokenizer.decode(ids[5:])
    [fast] = Measurer(tokenizer).measure([text], keep=lambda n: True)
    assert fast.without(2, 5) == head.without(2, 5)  # offsets and decoding cut at the same place


def test_overlong_skip_is_counted_never_silent(tokenizer, items):
    stats = FitStats()
    docs = build_judge_docs(items[:6], OrderScheme.parse("paper").orders_for, judge="loglikelihood",
                            tokenizer=tokenizer, fitting=Fitting(Protocol.FIT, 900, 16, Overlong.SKIP), stats=stats)
    skipped = [d for d in docs if d["skipped"]]
    assert skipped and stats.skipped == len(skipped)
    assert all("budget" in d["skip_reason"] and d["prompt"] == "" for d in skipped)
    assert "skipped as over-long" in stats.summary()


def test_rm_docs_carry_the_contract_and_the_reward_models_cut(tokenizer, items):
    item = select(items, tasktypes=["BestOfN"])[0]
    [doc] = build_rm_docs([item], OrderScheme.parse("paper").orders_for, tokenizer=tokenizer,
                          fitting=Fitting(Protocol.FIT, 700, 0))
    decoded = decode_rm_context(doc["prompt"])
    assert decoded == {"messages": item.prompt_template, "item": f"{item.config}/{item.id}", "protocol": "fit"}
    assert doc["choices"] == [item.answers[k] for k in doc["order"]]
    assert doc["truncated_tokens"] > 0  # what hf-rm's middle cut (rm.formatting) will drop


@pytest.mark.parametrize("bad, field", [
    ({"order": "sideways"}, "order"), ({"overlong": "drop"}, "overlong"), ({"max_length": "-3"}, "max_length"),
    ({"parser": "fuzzy"}, "parser"), ({"longrm_configs": "LongQA,Poetry"}, "longrm_configs"),
])
def test_bad_options_name_the_option(bad, field):
    with pytest.raises(InputError) as err:
        parse_options({"data_dir": "sample", **bad})
    assert err.value.field == field


def test_data_dir_errors_name_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        load_dataset(data_dir="no_such_dir", longrm_judge="generative")
    assert str(tmp_path / "no_such_dir") in str(err.value)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Math.jsonl").write_bytes(
        (Path(load_benchmark("sample").files["Math"])).read_bytes())
    with pytest.raises(InputError, match="no BestOfN items"):  # relative folder, resolved from the CWD
        load_dataset(data_dir="data", longrm_judge="generative", longrm_tasktypes="BestOfN")
    ds = load_dataset(data_dir="data", longrm_judge="generative", order="both")
    assert len(ds["test"]) == 2 * 2 and set(ds["test"]["config"]) == {"Math"}


def _evaluate(model_dir, task, metadata, **kwargs):
    import lm_eval

    meta = {"pretrained": str(model_dir), "data_dir": "sample", **metadata}
    return lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "max_length": 1024},
                                   tasks=[task], task_manager=_manager(meta), device="cpu", log_samples=True,
                                   **kwargs)


def test_generative_slice_fits_the_model_and_reports_paper_metrics(tiny_model, tokenizer):
    res = _evaluate(tiny_model, "long_rewardbench_pairwise_math",
                    {"max_length": 1024, "max_gen_toks": 4, "order": "both", "protocol": "fit"},
                    gen_kwargs="max_gen_toks=4")
    values = res["results"]["long_rewardbench_pairwise_math"]
    assert {"AVG,none", "Math,none", "PairWise Avg,none", "Length Avg,none", "extra/truncated,none"} <= set(values)
    assert "Rank Avg,none" not in values
    samples = res["samples"]["long_rewardbench_pairwise_math"]
    assert len(samples) == 4 and values["extra/truncated,none"] == 4
    for sample in samples:
        context = sample["arguments"][0][0]
        assert context == sample["doc"]["prompt"]  # sent as rendered: no second chat template
        # fits next to the generation budget, so lm-eval's own left truncation never fires
        assert len(tokenizer(context, add_special_tokens=False)["input_ids"]) <= 1024 - 4
        assert context.startswith("<|im_start|>system\nPlease act as an impartial judge")


def test_apply_chat_template_sends_the_judge_messages(tiny_model, tokenizer):
    res = _evaluate(tiny_model, "long_rewardbench_pairwise_math", {"max_length": 1024, "max_gen_toks": 4,
                                                                   "protocol": "fit"},
                    gen_kwargs="max_gen_toks=4", apply_chat_template=True, system_instruction="Be terse.")
    for sample in res["samples"]["long_rewardbench_pairwise_math"]:
        doc = sample["doc"]
        start, end = doc["user_span"]
        messages = [{"role": "system", "content": "Be terse.\n\n" + doc["system"]},
                    {"role": "user", "content": doc["prompt"][start:end]}]
        # thinking off: lm-eval's own renderer gets enable_thinking=False from the task
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                 enable_thinking=False)
        assert sample["arguments"][0][0] == expected
        assert expected.endswith("<think>\n\n</think>\n\n")
        # the context the model sent is longer than the fitted prompt (the system instruction): generation shrinks
        # to the room left instead of lm-eval cutting the prompt from the left
        sent = len(tokenizer(expected, add_special_tokens=False)["input_ids"])
        assert sample["arguments"][0][1]["max_gen_toks"] == min(4, 1024 - sent)


@pytest.mark.skipif(importlib.util.find_spec("longrm_tasks.adapters.lm_eval.rm") is None,
                    reason="the hf-rm model is not in this checkout")
def test_reward_model_slice_ranks_by_reward(tmp_path_factory):
    import lm_eval
    import lm_eval.api.registry
    from longrm_tasks.adapters.lm_eval.plugin import register_models

    register_models(lm_eval.api.registry)  # hf-rm, as the start-up hook / `longrm eval` register it

    rm_dir = save_tiny_model(tmp_path_factory.mktemp("rm") / "rm", kind="seq-cls", hidden=32, layers=1,
                             max_positions=4096)
    meta = {"pretrained": str(rm_dir), "data_dir": "sample", "max_length": 1024}
    res = lm_eval.simple_evaluate(model="hf-rm", model_args={"pretrained": str(rm_dir), "max_length": 1024},
                                  tasks=["long_rewardbench_rm_code"], task_manager=_manager(meta), device="cpu",
                                  log_samples=True)
    from longrm_tasks.verdicts.parsing import scores_to_ranks

    samples = res["samples"]["long_rewardbench_rm_code"]
    for sample in samples:
        scores = [float(r[0]) for r in sample["filtered_resps"]]
        if sample["doc"]["overlong"]:  # paper protocol: beyond the model's 1,024 tokens -> scored wrong
            assert sample["AVG"]["predicted"] is None and sample["AVG"]["overlong"]
        else:
            assert sample["AVG"]["predicted"] == scores_to_ranks(scores)
    assert any(s["doc"]["overlong"] for s in samples) and not all(s["doc"]["overlong"] for s in samples)
    assert 0 <= res["results"]["long_rewardbench_rm_code"]["AVG,none"] <= 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_each_task_family_refuses_the_other_kind_of_local_checkpoint(tiny_model, tmp_path):
    rm_dir = save_tiny_model(tmp_path / "rm", kind="seq-cls", hidden=32, layers=1)
    with pytest.raises(InputError, match="is a causal LM .*--model hf-rm") as err:
        load_dataset(data_dir="sample", longrm_judge="reward", pretrained=str(tiny_model))
    assert err.value.field == "pretrained"
    with pytest.raises(InputError, match="is a scalar reward model"):
        load_dataset(data_dir="sample", longrm_judge="loglikelihood", pretrained=str(rm_dir))
