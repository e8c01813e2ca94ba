"""The paper protocol end to end: `longrm render` against a transcription of the reference's get_prompt + orders.

Records are the bundled LongQA sample with some contexts blown up past the
reference's 131,072-token rule (made here, for the offline test tokenizer), so
the head/tail cut, the decode back to text, the FastChat fallback and
``clean_up_tokenization_spaces`` are all exercised token for token.
"""
from __future__ import annotations

import json
from argparse import Namespace

import pytest

from paper_prompt_oracle import preprocess  # noqa: E402  (tests/helpers is on sys.path, see tests/conftest.py)

from longrm_tasks.commands import render
from longrm_tasks.data.loading import SAMPLE_DIR
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.context.truncation import PAPER_LIMIT

# Gemma 2/3's template, as shipped (system merged into the first user turn, content trimmed, BOS in the text).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + "
    "'\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = "
    "messages %}{% endif %}{% for message in loop_messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<start_of_turn>model\n' }}{% endif %}")

FILLER = "The quick brown fox jumps over the lazy dog . Isn't it ? Zoë's café , 1000 ! "


def _long_records(tokenizer) -> list[dict]:
    rows = [json.loads(line) for line in (SAMPLE_DIR / "LongQA.jsonl").read_text(encoding="utf-8").splitlines()]
    per_filler = len(tokenizer(FILLER, add_special_tokens=False)["input_ids"])
    # target context sizes (tokens): over the rule, just under it, far over it, for both task types
    targets = {0: PAPER_LIMIT + 3_000, 1: PAPER_LIMIT - 4_000, 8: PAPER_LIMIT + 20_000}
    for index, tokens in targets.items():
        user = rows[index]["prompt_template"][-1]
        user["content"] = FILLER * (tokens // per_filler) + user["content"]
    assert rows[8]["tasktype"] == "BestOfN" and rows[0]["tasktype"] == "PairWise"
    return rows


def _with_bos(tok):
    """A Llama/Gemma-style tokenizer: a BOS token that ``tokenizer(text)`` adds (and a Gemma chat template)."""
    from tokenizers import processors

    tok.add_special_tokens({"bos_token": "<bos>", "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.convert_tokens_to_ids("<bos>"))])
    tok.chat_template = GEMMA_TEMPLATE
    return tok


def _setup(tmp_path, *, clean_up: bool = False, template: bool = True, bos: bool = False):
    tok = build_tokenizer()
    if bos:
        tok = _with_bos(tok)
    if not template:
        tok.chat_template = None
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(tok_dir)
    if clean_up:  # as Llama-3's tokenizer_config.json says it (transformers 5 does not write the flag itself)
        config = json.loads((tok_dir / "tokenizer_config.json").read_text())
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    assert tok.clean_up_tokenization_spaces == clean_up and bool(tok.chat_template) == template
    data = tmp_path / "data"
    data.mkdir()
    records = _long_records(tok)
    (data / "LongQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return tok, tok_dir, data, records


def _render(tmp_path, tok_dir, data, **extra) -> list[dict]:
    out = tmp_path / "prompts.jsonl"
    args = dict(data=str(data), data_revision=None, tokenizer=str(tok_dir), protocol="paper", max_length=None,
                max_gen_toks=2048, overlong=None, order="paper", configs=None, tasktypes=None,
                trust_remote_code=False, out=str(out))
    args.update(extra)
    assert render.run(Namespace(**args)) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("clean_up, template, bos", [(False, True, False), (True, True, False), (False, False, False),
                                                     (False, True, True), (False, False, True)],
                         ids=["chatml", "clean-up-spaces", "no-template-zero-shot", "gemma-bos",
                              "zero-shot-bos"])
def test_render_equals_the_reference_get_prompt_token_for_token(tmp_path, clean_up, template, bos):
    tok, tok_dir, data, records = _setup(tmp_path, clean_up=clean_up, template=template, bos=bos)
    rows = _render(tmp_path, tok_dir, data)
    oracle = {records[o["index"]]["id"]: o for o in preprocess(records, tok)}
    assert len(rows) == len(records) == len(oracle)
    cut = 0
    for row in rows:
        ref = oracle[row["id"]]
        assert row["shown_order"] == ref["shuffled_order"]
        assert row["prompt"] == ref["input_text"]  # byte for byte
        # token for token: our text encodes to the reference's ids (where the text is not re-joined at a cut: the
        # reference too hands the model the decoded text, whose seam may tokenize differently from the kept ids)
        ours = tok(row["prompt"], add_special_tokens=False)["input_ids"]
        if clean_up:  # the clean-up edits the text itself: its tokens are no longer the reference's ids
            pass
        elif not row["truncated"]:
            assert ours == ref["prompt_token"]
        else:
            assert ours[:65000] == ref["prompt_token"][:65000] and ours[-65000:] == ref["prompt_token"][-65000:]
        cut += row["truncated"]
        if row["truncated"]:
            assert len(ref["prompt_token"]) == 65536 + 65531
    assert cut == 2  # the two contexts over 131,072 tokens, and only those
    rendered = {r["id"]: r for r in rows}
    if not template:
        assert all(r["prompt"].split("\n### ")[1].startswith("Human: [User Question]") for r in rows)
        assert rendered[records[3]["id"]]["prompt"].endswith("\n### Assistant:")
    if bos:  # one BOS, in the text: from the template, or added by tokenizer(prompt) in the zero-shot fallback
        assert all(r["prompt"].startswith("<bos>") and not r["prompt"].startswith("<bos><bos>") for r in rows)
        assert all(r["prompt_tokens"] == len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows)
    if clean_up:  # Llama-3-style tokenizers: the decoded prompt differs from the rendered one (" ." -> ".")
        first = rendered[records[0]["id"]]["prompt"]
        assert "dog. Isn't it? Zoë's café, 1000!" in first and " . " not in first


def test_over_long_prompts_are_marked_not_cut(tmp_path):
    _tok, tok_dir, data, records = _setup(tmp_path)
    rows = _render(tmp_path, tok_dir, data, max_length=32_768)
    over = [r for r in rows if r["prompt_tokens"] >= 32_768]
    assert {r["id"] for r in over} == {records[i]["id"] for i in (0, 1, 8)}
    assert all(r["overlong"] for r in over) and not any(r["overlong"] for r in rows if r not in over)
    full = {r["id"]: r for r in _render(tmp_path, tok_dir, data)}
    assert all(r["prompt"] == full[r["id"]]["prompt"] for r in rows)  # paper never cuts to fit the model


def test_fit_protocol_cuts_to_the_model(tmp_path):
    tok, tok_dir, data, records = _setup(tmp_path)
    rows = _render(tmp_path, tok_dir, data, protocol="fit", max_length=8192, max_gen_toks=1024)
    long_ids = {records[i]["id"] for i in (0, 1, 8)}
    for row in rows:
        assert row["prompt_tokens"] >= 0 and row["protocol"] == "fit"
        assert len(tok(row["prompt"], add_special_tokens=False)["input_ids"]) <= 8192 - 1024
        assert row["truncated"] == (row["id"] in long_ids)
        assert row["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
