"""Stage II alignment data: the authors' format, TRL's formats, the chat template's assistant turn,
truncation counts and error locations."""
import json
import os

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.prompts.judge_prompts import render_chat
from longrm_tasks.testing import QWEN3_CHAT_TEMPLATE, build_tokenizer
from longrm_tasks.train.alignment.data import load_alignment_dataset
from longrm_tasks.train.sample.generate import sample_path

# The authors' real 20-record Stage II sample is not shipped (not ours to redistribute); point
# this variable at a copy to run the test that reads it.
REAL_SAMPLE = os.environ.get("LONGRM_ALIGNMENT_SAMPLE")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def qwen3():
    return build_tokenizer(chat_template=QWEN3_CHAT_TEMPLATE)


def _assistant_turn(tokenizer, messages, content):
    """The tokens the chat template renders for an assistant turn after the evaluation prompt."""
    prompt = render_chat(tokenizer, messages)  # the evaluation's rendering: generation prompt, thinking off
    full = render_chat(tokenizer, messages + [{"role": "assistant", "content": content}], add_generation_prompt=False)
    assert full.startswith(prompt)
    return tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]


def test_stage_ii_responses_are_the_chat_templates_assistant_turn_on_a_qwen3_template(qwen3):
    records = [json.loads(line) for line in sample_path("alignment").read_text().splitlines()[:1]]
    ds = load_alignment_dataset(records, qwen3, max_length=100_000, num_rejected=4)
    for record, row in zip(records, ds):
        messages = record["messages"]
        assert row["chosen_input_ids"] == _assistant_turn(qwen3, messages, record["chosen"])
        for rejected, ids in zip(record["rejected"], row["rejected_input_ids"]):
            assert ids == _assistant_turn(qwen3, messages, rejected)
        # the prompt is the evaluation prompt, empty thinking block included, token for token
        assert row["prompt_input_ids"] == qwen3(render_chat(qwen3, messages), add_special_tokens=False)["input_ids"]
        assert qwen3.decode(row["prompt_input_ids"]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert qwen3.decode(row["chosen_input_ids"]) == record["chosen"] + "<|im_end|>\n"


def test_stage_ii_and_stage_i_render_a_judgment_alike(qwen3, tmp_path):
    """The SFT target and the Stage II chosen response are the same tokens after the same prompt."""
    from longrm_tasks.train.sft import tokenize_sft_file

    (record,) = [json.loads(line) for line in sample_path("alignment").read_text().splitlines()[:1]]
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"messages": record["messages"] + [{"role": "assistant",
                                                                  "content": record["chosen"]}]}) + "\n")
    rows, _ = tokenize_sft_file(path, qwen3, None)
    ids, mask = rows[0]["input_ids"], rows[0]["completion_mask"]
    row = load_alignment_dataset([record], qwen3, max_length=100_000, num_rejected=4)[0]
    assert ids == row["prompt_input_ids"] + row["chosen_input_ids"]
    assert mask == [0] * len(row["prompt_input_ids"]) + [1] * len(row["chosen_input_ids"])


def test_a_template_whose_turns_do_not_continue_its_generation_prompt_trains_after_the_evaluation_prompt(tok):
    """The ChatML test template adds the empty thinking block to its generation prompt only: the judge
    is asked after that block, so it learns the judgment after that block."""
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Is 7 right?"}]
    row = load_alignment_dataset([{"messages": messages, "chosen": "[Score: 9]", "rejected": ["[Score: 1]"]}],
                                 tok, max_length=256, num_rejected=1)[0]
    assert tok.decode(row["prompt_input_ids"]) == render_chat(tok, messages)
    assert tok.decode(row["prompt_input_ids"]).endswith("<think>\n\n</think>\n\n")
    assert tok.decode(row["chosen_input_ids"]) == "[Score: 9]<|im_end|>\n"
    assert tok.decode(row["rejected_input_ids"][0]) == "[Score: 1]<|im_end|>\n"


def test_bundled_sample_loads_with_v_2_and_every_cut_is_counted(tok):
    ds, stats = load_alignment_dataset(str(sample_path("alignment")), tok, max_length=1024, num_rejected=2,
                                       return_stats=True)
    assert len(ds) == stats.records == 20 and stats.extra_rejected_ignored == 20  # 4 each, first 2 used
    cut = [r for r in ds if r["prompt_length_original"] > len(r["prompt_input_ids"])]
    assert stats.truncated == len(cut) == 20
    assert stats.tokens_dropped == sum(r["prompt_length_original"] - len(r["prompt_input_ids"]) for r in cut)
    assert stats.key_passages_kept == 20 and stats.tails_cut == 0  # evidence and question/response kept whole
    for row in ds:
        assert len(row["prompt_input_ids"]) + max(map(len, [row["chosen_input_ids"], *row["rejected_input_ids"]])) \
            <= 1024


@pytest.mark.skipif(not REAL_SAMPLE, reason="set LONGRM_ALIGNMENT_SAMPLE to the authors' 20-record Stage II "
                                            "sample (longrm_alignment_sample.jsonl) to run this test")
def test_authors_sample_loads_and_truncation_is_counted(tok):
    max_length = 20_000  # the tiny tokenizer turns 32K-62K Llama tokens into ~60K-260K
    ds, stats = load_alignment_dataset(REAL_SAMPLE, tok, max_length=max_length, num_rejected=4, return_stats=True)
    assert len(ds) == stats.records == 20
    cut = [r for r in ds if r["prompt_length_original"] > len(r["prompt_input_ids"])]
    assert stats.truncated == len(cut) > 0
    assert stats.tokens_dropped == sum(r["prompt_length_original"] - len(r["prompt_input_ids"]) for r in cut)
    with open(REAL_SAMPLE, encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    row = ds[0]
    assert len(row["rejected_input_ids"]) == 4
    assert tok.decode(row["chosen_input_ids"]) == first["chosen"] + "<|im_end|>\n"
    longest = max(len(row["chosen_input_ids"]), *map(len, row["rejected_input_ids"]))
    assert len(row["prompt_input_ids"]) + longest <= max_length
    # the head of the context and the whole question/response tail survive the cut
    prompt_text = tok.decode(row["prompt_input_ids"])
    user = first["messages"][1]["content"]
    assert prompt_text.endswith(user[user.rfind("</context>") + len("</context>"):] + "<|im_end|>\n"
                                "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<|im_start|>system\n" + first["messages"][0]["content"][:200] in prompt_text


def test_extra_rejected_use_first_v_and_padding_is_opt_in(tok):
    record = {"prompt": "Q?", "chosen": "yes", "rejected": ["no", "maybe", "never"]}
    ds, stats = load_alignment_dataset([record], tok, max_length=64, num_rejected=2, return_stats=True)
    assert [tok.decode(r[:-1]) for r in ds[0]["rejected_input_ids"]] == ["no", "maybe"]
    assert stats.extra_rejected_ignored == 1
    with pytest.raises(InputError, match="record 1: field 'rejected': has 3 responses"):
        load_alignment_dataset([record], tok, max_length=64, num_rejected=4)
    ds, stats = load_alignment_dataset([record], tok, max_length=64, num_rejected=5, pad_rejected=True,
                                       return_stats=True)
    assert [tok.decode(r[:-1]) for r in ds[0]["rejected_input_ids"]] == ["no", "maybe", "never", "no", "maybe"]
    assert stats.padded_rejected == 1


def test_trl_conversational_and_implicit_prompt_formats(tok):
    user = [{"role": "user", "content": "Which is right?"}]
    explicit = {"prompt": user, "chosen": [{"role": "assistant", "content": "A"}],
                "rejected": [{"role": "assistant", "content": "B"}]}
    implicit = {"chosen": user + [{"role": "assistant", "content": "A"}],
                "rejected": user + [{"role": "assistant", "content": "B"}]}
    a, b = (load_alignment_dataset([r], tok, max_length=64, num_rejected=1)[0] for r in (explicit, implicit))
    assert a == b
    assert a["prompt_input_ids"] == tok(render_chat(tok, user), add_special_tokens=False)["input_ids"]
    assert tok.decode(a["rejected_input_ids"][0]) == "B<|im_end|>\n"


@pytest.mark.parametrize("record, field, message", [
    ({"prompt": "q", "rejected": ["x"]}, None, "missing 'chosen'/'rejected'"),
    ({"prompt": "q", "chosen": "c", "rejected": []}, "rejected", "non-empty list"),
    ({"prompt": "q", "chosen": 3, "rejected": ["x"]}, "chosen", "must be a string"),
    ({"prompt": "q", "chosen": "c", "rejected": ["x", 5]}, "rejected[1]", "must be a string"),
    ({"messages": [{"role": "user"}], "chosen": "c", "rejected": ["x"]}, "messages[0].content", "not a string"),
    ({"chosen": "c", "rejected": ["x"]}, "prompt", "missing"),
])
def test_bad_records_name_file_line_and_field(tmp_path, tok, record, field, message):
    path = tmp_path / "data.jsonl"
    good = {"prompt": "q", "chosen": "c", "rejected": ["x"]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError) as err:
        load_alignment_dataset(path, tok, max_length=64, num_rejected=1)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, field)
    assert message in err.value.message


def test_invalid_json_and_response_without_room_for_the_prompt(tmp_path, tok):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "q",\n')
    with pytest.raises(InputError, match=r"data.jsonl:1: invalid JSON"):
        load_alignment_dataset(path, tok, max_length=64, num_rejected=1)
    with pytest.raises(InputError, match="leaves no room for the prompt") as err:
        load_alignment_dataset([{"prompt": "q", "chosen": "c", "rejected": " word" * 40}], tok, max_length=20,
                               num_rejected=1)
    assert err.value.field == "chosen/rejected"


def test_key_passage_survives_the_cut_and_an_oversized_tail_is_counted(tok):
    filler = " ".join(f"filler sentence number {i}." for i in range(300))
    user = (f"Judge the part between <LD> and </LD>.\n<context>\n{filler} <LD>the door is green</LD> {filler}\n"
            "</context>\nQuestion: what colour is the door?")
    record = {"messages": [{"role": "user", "content": user}], "chosen": "green", "rejected": ["red"]}
    ds, stats = load_alignment_dataset([record], tok, max_length=300, num_rejected=1, return_stats=True)
    prompt = tok.decode(ds[0]["prompt_input_ids"])
    assert "<LD>the door is green</LD>" in prompt and prompt.count("filler") < 300
    assert prompt.endswith("Question: what colour is the door?<|im_end|>\n<|im_start|>assistant\n"
                           "<think>\n\n</think>\n\n")
    assert (stats.truncated, stats.key_passages_kept, stats.tails_cut) == (1, 1, 0)
    long_tail = {**record, "messages": [{"role": "user", "content": user + " Explain." * 400}]}
    ds, stats = load_alignment_dataset([long_tail], tok, max_length=300, num_rejected=1, return_stats=True)
    assert len(ds[0]["prompt_input_ids"]) + 2 <= 300 and stats.tails_cut == 1


GEMMA_LIKE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] + '\n\n' %}"
              "{% else %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
              "{% if m['role'] == 'user' and sys is defined %}{{ sys }}{% endif %}"
              "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
LLAMA3_LIKE = ("{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + "
               "m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL_LIKE = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
                "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")


@pytest.mark.parametrize("template", [QWEN3_CHAT_TEMPLATE, GEMMA_LIKE, LLAMA3_LIKE, MISTRAL_LIKE],
                         ids=["qwen3", "gemma", "llama3", "mistral"])
def test_every_template_family_trains_the_turn_it_renders_after_the_evaluation_prompt(tok, template):
    import copy

    tokenizer = copy.copy(tok)  # the same vocabulary, another chat template
    tokenizer.chat_template = template
    messages = [{"role": "system", "content": "Judge the answer."}, {"role": "user", "content": "Is 7 right?"}]
    record = {"messages": messages, "chosen": "[Analysis] yes [Score: 9]", "rejected": ["[Score: 1]", "[Score: 2]"]}
    row = load_alignment_dataset([record], tokenizer, max_length=512, num_rejected=2)[0]
    prompt = render_chat(tokenizer, messages)
    assert tokenizer.decode(row["prompt_input_ids"]) == prompt
    for content, ids in zip([record["chosen"], *record["rejected"]], [row["chosen_input_ids"], *row["rejected_input_ids"]]):
        full = render_chat(tokenizer, messages + [{"role": "assistant", "content": content}],
                           add_generation_prompt=False)
        assert full.startswith(prompt) and tokenizer.decode(ids) == full[len(prompt):]
