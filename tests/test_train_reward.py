"""Discriminative RM data and training: pairs cut in the context (never dropped), full or LoRA."""
import json

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.testing import build_tokenizer, save_tiny_model
from longrm_tasks.train.reward import tokenize_preference_file

TOK = build_tokenizer()
LONG = "context " * 400
STAGE2 = {"messages": [{"role": "system", "content": "judge"}, {"role": "user", "content": LONG + "Q?"}],
          "chosen": "[Score: 8]", "rejected": ["[Score: 2]", "[Score: 1] bad"]}


def write(tmp_path, records, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_formats_give_pairs(tmp_path):
    explicit = {"prompt": "Q: sky?", "chosen": " blue", "rejected": " green", "margin": 1.0}
    implicit = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}],
                "margin": 0.5}
    rows, _ = tokenize_preference_file(write(tmp_path, [explicit, implicit]), TOK, max_length=None)
    assert [r["margin"] for r in rows] == [1.0, 0.5]
    assert TOK.decode(rows[0]["chosen_ids"]) == "Q: sky? blue<|im_end|>"
    assert TOK.decode(rows[1]["rejected_ids"]).endswith("<|im_start|>assistant\ngo away<|im_end|>\n")
    rows, stats = tokenize_preference_file(write(tmp_path, [STAGE2]), TOK, max_length=None)
    assert len(rows) == 2 and stats.examples == 2  # one pair per rejected judgment


def test_long_pairs_are_cut_not_dropped_and_share_the_context(tmp_path):
    rows, stats = tokenize_preference_file(write(tmp_path, [STAGE2]), TOK, max_length=128)
    assert stats.truncated == 2 and stats.tokens_dropped > 0
    for row in rows:
        assert max(len(row["chosen_ids"]), len(row["rejected_ids"])) <= 128
        assert TOK.decode(row["chosen_ids"]).endswith("[Score: 8]<|im_end|>\n")
    # Both responses are judged on the same cut of the context.
    chosen, rejected = TOK.decode(rows[1]["chosen_ids"]), TOK.decode(rows[1]["rejected_ids"])
    assert chosen.split("<|im_start|>assistant")[0] == rejected.split("<|im_start|>assistant")[0]


@pytest.mark.parametrize("record, field, message", [
    ({"prompt": "q", "chosen": "a"}, None, "missing 'chosen'/'rejected'"),
    ({"prompt": "q", "chosen": "a", "rejected": ""}, "rejected", "empty"),
    ({"messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": ["b", 3]}, "rejected[1]", "got int"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "number"),
])
def test_bad_records_name_file_line_and_field(tmp_path, record, field, message):
    path = write(tmp_path, [record])
    with pytest.raises(InputError, match=message) as err:
        tokenize_preference_file(path, TOK, max_length=None)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 1, field)


def test_lora_reward_stage_trains_and_saves_a_loadable_merged_model(tmp_path):
    """RewardTrainer keeps every pair (none over max_length), LoRA on a SEQ_CLS model, merged on save."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from longrm_tasks.train.recipe import Recipe, Stage
    from longrm_tasks.train.runner import run_recipe

    base = save_tiny_model(tmp_path / "base", kind="seq-cls", hidden=32, layers=1)
    data = write(tmp_path, [STAGE2] * 2)
    stage = Stage(name="rm", kind="reward", data=data, lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
                  args={"max_length": 96, "per_device_train_batch_size": 2, "max_steps": 2, "learning_rate": 1e-3,
                        "bf16": False, "gradient_checkpointing": False, "use_cpu": True, "save_strategy": "no",
                        "disable_tqdm": True})
    recipe = Recipe(path=tmp_path / "r.yaml", name="rm-test", base_model=str(base), output_dir=tmp_path / "out",
                    stages=[stage])
    (result,) = run_recipe(recipe)
    assert result["data"]["train"] == {**result["data"]["train"], "examples": 4, "truncated": 4}
    out = tmp_path / "out" / "rm"
    assert (out / "adapter" / "adapter_config.json").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    start = AutoModelForSequenceClassification.from_pretrained(base)
    assert not torch.equal(model.score.weight, start.score.weight)  # the head was trained, then merged
    card = (out / "README.md").read_text()
    assert "Bradley-Terry" in card and str(data) in card and "LoRA" in card
