"""Stage II alignment data: the authors' format, TRL's formats, truncation counts and error locations."""
import json

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.train.alignment_data import load_alignment_dataset

SAMPLE = "/work/shared/data/longrm_alignment_sample.jsonl"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_shared_sample_loads_and_truncation_is_counted(tok):
    max_length = 20_000  # the tiny tokenizer turns 32K-62K Llama tokens into ~60K-260K
    ds, stats = load_alignment_dataset(SAMPLE, tok, max_length=max_length, num_rejected=4, return_stats=True)
    assert len(ds) == stats.records == 20
    cut = [r for r in ds if r["prompt_length_original"] > len(r["prompt_input_ids"])]
    assert stats.truncated == len(cut) > 0
    assert stats.tokens_dropped == sum(r["prompt_length_original"] - len(r["prompt_input_ids"]) for r in cut)
    first = json.loads(open(SAMPLE).readline())
    row = ds[0]
    assert len(row["rejected_input_ids"]) == 4
    assert row["chosen_input_ids"][-1] == tok.eos_token_id
    assert tok.decode(row["chosen_input_ids"][:-1]) == first["chosen"]
    longest = max(len(row["chosen_input_ids"]), *map(len, row["rejected_input_ids"]))
    assert len(row["prompt_input_ids"]) + longest <= max_length
    # the head of the context and the whole question/response tail survive the cut
    prompt_text = tok.decode(row["prompt_input_ids"])
    user = first["messages"][1]["content"]
    assert prompt_text.endswith(user[user.rfind("</context>") + len("</context>"):] + "<|im_end|>\n"
                                "<|im_start|>assistant\n")
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
    assert a["prompt_input_ids"] == tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True,
                                                            return_dict=False)
    assert tok.decode(a["rejected_input_ids"][0]) == "B<|im_end|>"


@pytest.mark.parametrize("record, field, message", [
    ({"prompt": "q", "rejected": ["x"]}, "chosen", "missing"),
    ({"prompt": "q", "chosen": "c", "rejected": []}, "rejected", "non-empty list"),
    ({"prompt": "q", "chosen": 3, "rejected": ["x"]}, "chosen", "must be a string"),
    ({"prompt": "q", "chosen": "c", "rejected": ["x", 5]}, "rejected[1]", "must be a string"),
    ({"messages": [{"role": "user"}], "chosen": "c", "rejected": ["x"]}, "messages", "string 'content'"),
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
    assert prompt.endswith("Question: what colour is the door?<|im_end|>\n<|im_start|>assistant\n")
    assert (stats.truncated, stats.key_passages_kept, stats.tails_cut) == (1, 1, 0)
    long_tail = {**record, "messages": [{"role": "user", "content": user + " Explain." * 400}]}
    ds, stats = load_alignment_dataset([long_tail], tok, max_length=300, num_rejected=1, return_stats=True)
    assert len(ds[0]["prompt_input_ids"]) + 2 <= 300 and stats.tails_cut == 1
