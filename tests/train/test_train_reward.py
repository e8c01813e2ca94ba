"""Discriminative RM data and training: pairs cut in the context (never dropped), full or LoRA."""
import json

import pytest

pytest.importorskip("trl", reason="the [train] extra (TRL) is not installed")

from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.testing import build_tokenizer, save_tiny_model  # noqa: E402
from longrm_tasks.train.reward import tokenize_preference_file  # noqa: E402

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
    assert "Bradley-Terry" in card and data.name in card and "LoRA" in card


def _reward_setup(tmp_path, aggregation, records, **config):
    from longrm_tasks.train.reward import RewardStageConfig, reward_trainer

    base = save_tiny_model(tmp_path / "base", kind="seq-cls", arch="qwen3", hidden=32, layers=2)
    args = RewardStageConfig(output_dir=str(tmp_path / "o"), max_length=96, bf16=False, use_cpu=True,
                             report_to="none", rejected_aggregation=aggregation, per_device_train_batch_size=2,
                             **config)
    trainer, report = reward_trainer(str(base), args, write(tmp_path, records))
    return trainer, report


RECORDS = [STAGE2, {"prompt": "Rate: " + "x " * 10, "chosen": "[Score: 9] yes", "rejected": ["[Score: 1]", "[Score: 4] hm"]}]


def test_pairwise_loss_and_gradients_equal_trl_reward_trainer(tmp_path):
    """Same rows through TRL's own collator and compute_loss (score head over every position)."""
    import torch
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    trainer, report = _reward_setup(tmp_path, "pairwise", RECORDS)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    assert len(rows) == 4 and report["train"]["examples"] == 4  # one pair per rejected judgment
    model = trainer.model
    params = [p for p in model.parameters() if p.requires_grad]
    ours = trainer.compute_loss(model, trainer.data_collator(rows))
    ours_grads = torch.autograd.grad(ours, params)
    trl_batch = DataCollatorForPreference(pad_token_id=TOK.pad_token_id)(rows)
    trl = RewardTrainer.compute_loss(trainer, model, trl_batch)
    trl_grads = torch.autograd.grad(trl, params)
    torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, trl_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_mean_aggregation_is_chosen_against_the_mean_of_rejected(tmp_path):
    """The authors' discriminative loss: -log σ(r_w - mean_j r_l^j), one term per record, one context cut."""
    import torch

    trainer, report = _reward_setup(tmp_path, "mean", RECORDS)
    rows = [trainer.train_dataset[i] for i in range(2)]
    assert report["train"]["examples"] == 2 and report["train"]["truncated"] == 1
    assert [len(r["rejected_ids"]) for r in rows] == [2, 2]
    prompt_len = len(TOK.decode(rows[0]["chosen_ids"]).split("<|im_start|>assistant")[0])
    assert all(TOK.decode(r)[:prompt_len] == TOK.decode(rows[0]["chosen_ids"])[:prompt_len]
               for r in rows[0]["rejected_ids"])  # every response judged on the same cut of the context
    model = trainer.model
    loss = trainer.compute_loss(model, trainer.data_collator(rows))

    def score(ids):  # the model's own forward: score head over every position, its own pooling
        return model(input_ids=torch.tensor([ids])).logits[0, 0]

    expected = torch.stack([
        -torch.nn.functional.logsigmoid(score(r["chosen_ids"]) - torch.stack([score(x) for x in r["rejected_ids"]]).mean())
        for r in rows]).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # the score head sees one pooled row per sequence, not every position
    shapes = []
    model.score.register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    trainer.compute_loss(model, trainer.data_collator(rows))
    assert shapes == [(6, 32)]  # 2 chosen + 4 rejected sequences, hidden 32


def test_mean_aggregation_trains_and_num_rejected_is_checked(tmp_path):
    trainer, _ = _reward_setup(tmp_path, "mean", RECORDS, max_steps=2, learning_rate=1e-3, save_strategy="no",
                               disable_tqdm=True, logging_steps=1)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all(key in logged[0] for key in ("accuracy", "margin", "mean_reward"))
    with pytest.raises(InputError, match="num_rejected is 3") as err:
        _reward_setup(tmp_path / "v3", "mean", RECORDS, num_rejected=3)
    assert (err.value.line, err.value.field) == (1, "rejected")


def test_aggregation_is_validated():
    from longrm_tasks.train.reward import RewardStageConfig

    with pytest.raises(ValueError, match="rejected_aggregation"):
        RewardStageConfig(output_dir="x", rejected_aggregation="max", use_cpu=True)
