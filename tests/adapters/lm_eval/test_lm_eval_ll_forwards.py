"""Log-likelihood judge at one forward per item: the per-tokenizer request check, and lm-eval's hf backend on it."""
from __future__ import annotations

import contextlib
import logging

import pytest

from longrm_tasks.requests.loglikelihood import (OPENING, VerdictRequest, legacy_choices, legacy_design,
                                                 verdict_request)
from longrm_tasks.testing import build_tokenizer

# Generation prompts that end real chat templates (the text the verdict's opening follows).
TAILS = {
    "chatml-thinking-off": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "gemma": "<end_of_turn>\n<start_of_turn>model\n",
    "llama3": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": " [/INST]",
    "none": "",
}


def _encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _sentencepiece_style_tokenizer():
    """A Metaspace BPE (the Llama-2 / Gemma family's pre-tokenization: no regex split of punctuation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrm_tasks.testing import _CORPUS

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789[]<>/\n:._,'|")
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<start_of_turn>", "<end_of_turn>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", name_or_path="sp-style")


def _merging_tokenizer():
    """A BPE whose vocabulary holds ``[[A`` and ``[[B`` (verdict openings as whole tokens, as some real ones do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789[]<>/\n:._,'|> \u2581"))
    vocab = {c: i for i, c in enumerate(["<unk>"] + chars)}
    merges = [("[", "["), ("]", "]"), ("[[", "A"), ("[[", "B")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", name_or_path="merging-vocab")


def _assert_one_token_after_opening(tokenizer, request: VerdictRequest, tail: str):
    """What lm-eval's `_encode_pair` will do: context = tail + opening, continuation = the extra tokens."""
    context = _encode(tokenizer, tail + request.opening)
    letter_ids = []
    for choice in request.choices:
        whole = _encode(tokenizer, tail + request.opening + choice)
        assert whole[:len(context)] == context
        assert len(whole) == len(context) + 1
        letter_ids.append(whole[-1])
    assert len(set(letter_ids)) == len(letter_ids)


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("make", [build_tokenizer, _sentencepiece_style_tokenizer], ids=["byte-bpe", "metaspace"])
def test_letters_are_one_token_after_the_opening(make, tail):
    tokenizer = make()
    for kind, n in [("pair", 2), ("rank", 2), ("rank", 3), ("rank", 4)]:
        request = verdict_request(tokenizer, kind, n, TAILS[tail])
        assert request == VerdictRequest(OPENING, list("ABCD"[:n]), True, "")
        _assert_one_token_after_opening(tokenizer, request, TAILS[tail])


def test_merging_tokenizer_falls_back_and_says_so_once(caplog):
    tokenizer = _merging_tokenizer()
    assert _encode(tokenizer, "x [[A")[-1] == tokenizer.convert_tokens_to_ids("[[A")  # the opening swallows A
    with caplog.at_level(logging.WARNING, logger="longrm_tasks.requests.loglikelihood"):
        first = verdict_request(tokenizer, "pair", 2, TAILS["gemma"])
        again = verdict_request(tokenizer, "pair", 2, TAILS["gemma"])
    assert first == again
    assert not first.one_forward and first.opening == ""
    assert first.choices == ["[[A]]", "[[B]]"] == legacy_choices("pair", 2)
    assert "merges" in first.reason and "[[A" in first.reason
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "merging-vocab" in warnings[0] and "[[A]]/[[B]]" in warnings[0]
    # Best-of-4 on the same tokenizer: C and D do not merge, but A and B do, so all four fall back.
    rank = verdict_request(tokenizer, "rank", 4, TAILS["gemma"])
    assert rank.choices == ["[[A>", "[[B>", "[[C>", "[[D>"] and not rank.one_forward


def test_no_tokenizer_and_forced_legacy_give_version_one_requests():
    assert verdict_request(None, "rank", 3) == VerdictRequest("", ["[[A>", "[[B>", "[[C>"], False,
                                                               "no tokenizer to check the letters with")
    tokenizer = build_tokenizer()
    with legacy_design():
        old = verdict_request(tokenizer, "pair", 2, TAILS["chatml-thinking-off"])
    assert (old.opening, old.choices, old.one_forward) == ("", ["[[A]]", "[[B]]"], False)
    assert verdict_request(tokenizer, "pair", 2, TAILS["chatml-thinking-off"]).one_forward


@pytest.mark.parametrize("kind,n", [("pairs", 2), ("pair", 3), ("rank", 1), ("rank", 11)])
def test_bad_kind_or_size_is_refused(kind, n):
    with pytest.raises(ValueError):
        verdict_request(build_tokenizer(), kind, n)


# ------------------------------------------------------------------ lm-eval's hf backend, end to end

from project import TASK_DIR  # noqa: E402


class ForwardCounter:
    """Counts the model's forward passes and the sequences they prefill (a pre-hook on the real module)."""

    def __init__(self, model):
        self.calls = self.rows = self.tokens = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.rows += int(ids.shape[0])
        self.tokens += int(ids.numel())

    def reset(self):
        self.calls = self.rows = self.tokens = 0


def _evaluate(lm, tasks, metadata, design):
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=metadata)
    with legacy_design() if design == "v1" else contextlib.nullcontext():
        res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, log_samples=True)
    samples = [s for task_samples in res["samples"].values() for s in task_samples]
    return res, samples


def _hf_lm(model, tokenizer, max_length):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1, max_length=max_length, device="cpu")


@pytest.mark.parametrize("arch", ["qwen3", "gemma", "llama"])
def test_lm_eval_hf_makes_one_forward_per_item(arch, tmp_path):
    """The whole long_rewardbench_ll group on the bundled sample: pairs and Best-of-2/3/4."""
    pytest.importorskip("lm_eval")
    from longrm_tasks.testing import build_model

    model, tokenizer = build_model("causal", arch, hidden=32, layers=1, heads=4, kv_heads=2, max_positions=4096)
    tokenizer.save_pretrained(tmp_path / "tok")
    lm = _hf_lm(model, tokenizer, 4096)
    counter = ForwardCounter(lm.model)
    meta = {"tokenizer": str(tmp_path / "tok"), "data_dir": "sample", "max_length": 4096}
    _, samples = _evaluate(lm, ["long_rewardbench_ll"], meta, "v2")
    kinds = {(s["doc"]["kind"], s["doc"]["n"]) for s in samples}
    assert {("pair", 2), ("rank", 2), ("rank", 3), ("rank", 4)} <= kinds
    assert all(s["doc"]["prompt"].endswith(OPENING) and s["doc"]["choices"] == list("ABCD"[:s["doc"]["n"]])
               for s in samples)
    assert counter.rows == counter.calls == len(samples) == 58  # one forward per item, every item scored
    # (version 1 made 141 here, one per choice: benchmarks/ll_forwards.py; the next test counts both designs)


def _fit_verdicts(model, tokenizer, docs, steps=200, lr=2e-2):
    """Train ``model`` until it gives each document's true verdict: the judge *knows* these items.

    Each document's prompt is followed by its true verdict (pairs ``[[A]]``, Best-of-N the full chain
    ``[[C>A>B>D]]``), trained with the usual next-token loss, except that the first letter is trained
    towards a distribution that ranks every letter by its answer's true rank (softmax of -2 x rank),
    which is what a log-likelihood judge that knows the ranking puts there. Nothing is hard-coded into
    the scoring: lm-eval then reads this model's log-probs like any other's.
    """
    import torch

    from longrm_tasks.prompts.judge_prompts import LETTERS

    letter_ids = [tokenizer.convert_tokens_to_ids(x) for x in LETTERS]
    rows = []
    for d in docs:
        ranked = sorted(range(d["n"]), key=lambda i: d["order"][i])  # shown positions, best first
        verdict = OPENING + (ranked_letters := [LETTERS[i] for i in ranked])[0] + (
            "]]" if d["kind"] == "pair" else ">" + ">".join(ranked_letters[1:]) + "]]")
        prompt_ids = _encode(tokenizer, d["prompt"])
        ids = _encode(tokenizer, d["prompt"] + verdict)
        assert ids[:len(prompt_ids)] == prompt_ids
        first = len(_encode(tokenizer, d["prompt"] + OPENING))  # position of the first letter
        target = torch.softmax(-2.0 * torch.tensor([float(d["order"][i]) for i in range(d["n"])]), 0)
        rows.append((ids, len(prompt_ids), first, target, letter_ids[:d["n"]]))
    width = max(len(r[0]) for r in rows)
    inputs = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(inputs)
    for i, (ids, *_rest) in enumerate(rows):
        inputs[i, :len(ids)], mask[i, :len(ids)] = torch.tensor(ids), 1
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask).logits.float(), -1)
        losses = []
        for i, (ids, start, first, target, letters) in enumerate(rows):
            for pos in range(start, len(ids)):
                if pos == first:
                    # KL(target || model) over the letters: 0 once the model ranks them as the target does
                    losses.append((target * (target.log() - logp[i, pos - 1, letters])).sum())
                else:
                    losses.append(-logp[i, pos - 1, ids[pos]])
        loss = torch.stack(losses).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if loss.item() < 0.05:
            break
    model.eval()
    print(f"fitted in {step + 1} steps, loss {loss.item():.3f}")
    return loss.item()


def test_a_judge_that_knows_the_verdicts_gives_the_same_ones_in_both_designs(tmp_path):
    pytest.importorskip("lm_eval")
    import torch

    from longrm_tasks.adapters.lm_eval.tasks import load_dataset
    from longrm_tasks.testing import build_model

    torch.manual_seed(0)
    model, tokenizer = build_model("causal", "gemma", hidden=32, layers=1, heads=4, kv_heads=2, max_positions=2048)
    tokenizer.save_pretrained(tmp_path / "tok")
    meta = {"tokenizer": str(tmp_path / "tok"), "data_dir": "sample", "max_length": 800, "protocol": "fit"}
    slices = {"long_rewardbench_ll_math": {"longrm_configs": "Math"},
              "long_rewardbench_ll_bon_code": {"longrm_tasktypes": "BestOfN", "longrm_configs": "Code"}}
    with legacy_design():  # the version-1 prompts: the judge prompt without the opening
        docs = [d for kw in slices.values() for d in load_dataset(**meta, longrm_judge="loglikelihood", **kw)["test"]]
    assert {(d["kind"], d["n"]) for d in docs} == {("pair", 2), ("rank", 2), ("rank", 3), ("rank", 4)}
    final_loss = _fit_verdicts(model, tokenizer, docs)
    assert final_loss < 0.1

    lm = _hf_lm(model, tokenizer, 800)
    counter = ForwardCounter(lm.model)
    runs = {}
    for design in ("v1", "v2"):
        counter.reset()
        res, samples = _evaluate(lm, list(slices), meta, design)
        runs[design] = (res["results"], {s["doc"]["key"]: s for s in samples}, counter.rows)
    (old_res, old, old_rows), (new_res, new, new_rows) = runs["v1"], runs["v2"]
    assert old_rows == sum(d["n"] for d in docs) == 13 and new_rows == len(docs) == 5
    assert old.keys() == new.keys()
    for key in old:
        assert old[key]["doc"]["choices"][0].startswith(OPENING) and not new[key]["doc"]["choices"][0].startswith("[")
        # the same predicted ranking of every item (the metric records carry it)
        assert old[key]["AVG"]["predicted"] == new[key]["AVG"]["predicted"], key
    for task in slices:
        for metric, value in old_res[task].items():
            if metric.endswith(",none") and not metric.startswith("extra/truncated"):
                assert new_res[task][metric] == pytest.approx(value, nan_ok=True), (task, metric)
    assert new_res["long_rewardbench_ll_math"]["AVG,none"] == 1.0  # the judge solves what it knows
    assert new_res["long_rewardbench_ll_bon_code"]["extra/bestofn_top1,none"] == 1.0


def test_apply_chat_template_context_ends_with_the_opening_too(tmp_path):
    """``--apply_chat_template`` renders the user content again with the model's template: the opening follows."""
    pytest.importorskip("lm_eval")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from longrm_tasks.testing import build_model

    model, tokenizer = build_model("causal", "qwen3", hidden=32, layers=1, heads=4, kv_heads=2, max_positions=4096)
    tokenizer.save_pretrained(tmp_path / "tok")
    lm = _hf_lm(model, tokenizer, 4096)
    counter = ForwardCounter(lm.model)
    meta = {"tokenizer": str(tmp_path / "tok"), "data_dir": "sample", "max_length": 4096}
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=meta)
    res = lm_eval.simple_evaluate(model=lm, tasks=["long_rewardbench_ll_bon_code"], task_manager=manager,
                                  log_samples=True, apply_chat_template=True)
    samples = res["samples"]["long_rewardbench_ll_bon_code"]
    for sample in samples:
        context, choice = sample["arguments"][0]
        assert context.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n" + OPENING) and len(choice) == 1
    assert counter.rows == len(samples) == 3


@pytest.mark.parametrize("protocol,max_length", [("paper", 1024), ("fit", 1024), ("fit", 2048)])
def test_the_opening_is_counted_in_the_prompt_tokens(protocol, max_length, tmp_path):
    """fit at 2,048: some heads fit alone and only their answers push them over (cut after measuring)."""
    pytest.importorskip("lm_eval")
    from longrm_tasks.adapters.lm_eval.tasks import load_dataset

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    meta = {"tokenizer": str(tmp_path / "tok"), "data_dir": "sample", "max_length": max_length, "protocol": protocol,
            "longrm_judge": "loglikelihood", "longrm_configs": "Code"}
    with legacy_design():
        old = load_dataset(**meta)["test"]
    new = load_dataset(**meta)["test"]
    assert len(old) == len(new) > 0
    for v1, v2 in zip(old, new):
        assert v2["prompt"] == v1["prompt"] + OPENING
        assert v2["prompt_tokens"] == v1["prompt_tokens"] + 1  # "[[" is one token after the chat template's tail
        if protocol == "paper" or not v2["truncated_tokens"]:
            assert v2["prompt_tokens"] == len(_encode(tokenizer, v2["prompt"]))
        if protocol == "fit":  # prompt + opening + letter fit the model: lm-eval never cuts the request
            assert len(_encode(tokenizer, v2["prompt"] + "A")) <= max_length
    if max_length == 2048:
        assert sum(bool(d["truncated_tokens"]) for d in new) == 1


def test_a_tokenizer_that_merges_gets_version_one_requests_through_lm_eval(tmp_path, caplog):
    """The fallback end to end: ``[[A`` is one token here, so the documents carry ``[[A]]``/``[[B]]``, said once."""
    pytest.importorskip("lm_eval")
    from longrm_tasks.testing import CHATML_TEMPLATE, build_model

    tokenizer = _merging_tokenizer()
    tokenizer.add_special_tokens({"pad_token": "<pad>", "eos_token": "<|im_end|>",
                                  "additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(tmp_path / "tok")
    model, _ = build_model("causal", "llama", tokenizer=tokenizer, hidden=32, layers=1, heads=4, kv_heads=2,
                           max_positions=8192)
    lm = _hf_lm(model, tokenizer, 8192)
    counter = ForwardCounter(lm.model)
    meta = {"tokenizer": str(tmp_path / "tok"), "data_dir": "sample", "max_length": 8192}
    with caplog.at_level(logging.WARNING, logger="longrm_tasks.requests.loglikelihood"):
        _, samples = _evaluate(lm, ["long_rewardbench_ll_math"], meta, "v2")
    assert [s["doc"]["choices"] for s in samples] == [["[[A]]", "[[B]]"]] * 2
    assert not any(s["doc"]["prompt"].endswith(OPENING) for s in samples)
    assert counter.rows == 4  # one forward per choice: correct, just not shared
    warnings = [r.getMessage() for r in caplog.records if r.name == "longrm_tasks.requests.loglikelihood"]
    assert len(warnings) == 1 and "one forward per choice" in warnings[0]
