"""AlignmentTrainer end to end on a tiny model: trains, logs TRL's metrics, checkpoints and resumes."""
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

pytest.importorskip("trl", reason="the [train] extra (TRL) is not installed")

from longrm_tasks.testing import build_model  # noqa: E402
from longrm_tasks.train.alignment.config import AlignmentConfig  # noqa: E402
from longrm_tasks.train.alignment.data import load_alignment_dataset  # noqa: E402
from longrm_tasks.train.alignment.trainer import AlignmentTrainer  # noqa: E402


def _records(n: int):
    rng = random.Random(0)
    return [{"messages": [{"role": "system", "content": "Judge the response."},
                          {"role": "user", "content": "<context>" + "the quick fox " * rng.randint(10, 40)
                                                      + "</context> Is 7 the answer?"}],
             "chosen": "[Analysis] it matches [Score: 9]",
             "rejected": ["[Analysis] no [Score: 1]", "[Analysis] wrong [Score: 2]"]} for _ in range(n)]


def _args(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, learning_rate=5e-3,
                save_steps=2, report_to=[], num_rejected=2, max_length=96, use_cpu=True, bf16=False,
                disable_tqdm=True, seed=0)
    return AlignmentConfig(**(base | overrides))


@pytest.mark.parametrize("share_context", [True, False])
def test_train_logs_checkpoints_and_resumes(tmp_path, share_context):
    model, tok = build_model(hidden=32, layers=2)
    data = load_alignment_dataset(_records(8), tok, max_length=96, num_rejected=2)
    trainer = AlignmentTrainer(model=model, args=_args(tmp_path, share_context=share_context),
                               train_dataset=data, eval_dataset=data.select(range(2)), processing_class=tok)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)
    assert logs[-1]["loss"] < logs[0]["loss"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"):
        assert key in logs[0]
    assert logs[-1]["rewards/margins"] > logs[0]["rewards/margins"]
    assert "eval_rewards/margins" in trainer.evaluate()

    checkpoint = tmp_path / "out" / "checkpoint-2"
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint)  # loadable on its own, default attention
    assert reloaded.config._attn_implementation == "sdpa"

    model2, _ = build_model(hidden=32, layers=2)
    resumed = AlignmentTrainer(model=model2, args=_args(tmp_path, share_context=share_context, max_steps=4),
                               train_dataset=data, processing_class=tok)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    steps = [h["step"] for h in resumed.state.log_history if "loss" in h]
    assert steps[-2:] == [3, 4] and resumed.state.global_step == 4


def test_peft_lora_trains_only_adapters(tmp_path):
    from peft import LoraConfig

    model, tok = build_model(hidden=32, layers=2)
    data = load_alignment_dataset(_records(4), tok, max_length=96, num_rejected=2)
    frozen = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    trainer = AlignmentTrainer(model=model, args=_args(tmp_path, max_steps=2, save_steps=10), train_dataset=data,
                               processing_class=tok,
                               peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    base = trainer.model.get_base_model()
    torch.testing.assert_close(base.model.layers[0].self_attn.q_proj.base_layer.weight, frozen)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


def test_mismatched_v_is_a_clear_error(tmp_path):
    model, tok = build_model(hidden=32, layers=1)
    data = load_alignment_dataset(_records(2), tok, max_length=96, num_rejected=2)
    trainer = AlignmentTrainer(model=model, args=_args(tmp_path, num_rejected=3, max_steps=1), train_dataset=data,
                               processing_class=tok)
    with pytest.raises(ValueError, match="num_rejected is 3"):
        trainer.train()


def test_bf16_autocast_reaches_the_layers(tmp_path):
    """The trainer bypasses model.forward (where accelerate puts autocast), so it must apply bf16 itself."""
    model, tok = build_model(hidden=32, layers=1)
    seen = set()
    model.model.layers[0].mlp.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    data = load_alignment_dataset(_records(2), tok, max_length=96, num_rejected=2)
    AlignmentTrainer(model=model, args=_args(tmp_path, max_steps=1, save_steps=10, bf16=True),
                     train_dataset=data, processing_class=tok).train()
    assert torch.bfloat16 in seen


def _save_gemma3(path):
    """A tiny Gemma-3-style base model: sliding/global layer mix (window shorter than the prompts)."""
    import transformers

    from longrm_tasks.testing import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, sliding_window=16, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=False))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_gemma3_trains_sft_then_alignment_with_shared_context_on_by_default(tmp_path, caplog):
    import json

    from longrm_tasks.train.recipe import Recipe, Stage
    from longrm_tasks.train.runner import run_recipe

    base = _save_gemma3(tmp_path / "gemma3")
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records(4)))
    common = {"max_length": 96, "per_device_train_batch_size": 2, "max_steps": 1, "bf16": False, "use_cpu": True,
              "save_strategy": "no", "disable_tqdm": True, "report_to": "none"}
    stages = [Stage(name="sft", kind="sft", data=data, args=dict(common)),
              Stage(name="alignment", kind="alignment", data=data, args={**common, "num_rejected": 2})]
    recipe = Recipe(path=tmp_path / "r.yaml", name="gemma3", base_model=str(base), output_dir=tmp_path / "out",
                    stages=stages)
    with caplog.at_level("WARNING"):
        results = run_recipe(recipe)
    assert [r["stage"] for r in results] == ["sft", "alignment"]
    assert not [r for r in caplog.records if "shared context off" in r.getMessage()]
    card = (tmp_path / "out" / "alignment" / "README.md").read_text()
    assert '"share_context": true' in card  # shared, not silently unshared (gradients: test_train_shared_context_families)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "alignment").config.model_type == "gemma3_text"


def test_unshareable_model_is_named_before_training_and_runs_unshared(tmp_path, caplog):
    import transformers

    from longrm_tasks.train.alignment.trainer import shared_context_preflight
    from longrm_tasks.train.recipe import Stage

    config = transformers.Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    config.layer_types = ["full_attention", "chunked_attention"]  # a kind of layer the packed layout cannot share
    config.save_pretrained(tmp_path / "m")
    stage = Stage(name="align", kind="alignment", data=tmp_path / "d.jsonl", args={})
    with caplog.at_level("WARNING"):
        line = shared_context_preflight(stage, str(tmp_path / "m"))
    assert stage.args["share_context"] is False
    assert "chunked_attention" in line and "unshared" in line and "\n" not in line
    assert [r.getMessage() for r in caplog.records] == [line]
    # a stage that already runs unshared is left alone, silently
    assert shared_context_preflight(Stage(name="b", kind="alignment", data=tmp_path / "d", args={
        "share_context": False}), str(tmp_path / "m")) is None


def test_trainer_falls_back_to_unshared_in_one_line(tmp_path, caplog):
    model, tok = build_model(arch="qwen3", hidden=32, layers=2)
    model.config.layer_types = ["full_attention", "chunked_attention"]
    data = load_alignment_dataset(_records(2), tok, max_length=96, num_rejected=2)
    with caplog.at_level("WARNING"):
        trainer = AlignmentTrainer(model, args=_args(tmp_path), train_dataset=data, processing_class=tok)
    assert trainer.args.share_context is False
    assert model.config._attn_implementation == "sdpa"
    assert sum("shared context off" in r.getMessage() for r in caplog.records) == 1


def test_runner_preflight_turns_sharing_off_before_the_first_stage(tmp_path, caplog):
    """Through the runner: the check runs for the alignment stage before Stage I starts (no training here)."""
    import transformers

    from longrm_tasks.train.recipe import Recipe, Stage
    from longrm_tasks.train.runner import preflight

    config = transformers.Llama4TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    config.save_pretrained(tmp_path / "m")  # chunked attention layers: not shareable
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    stages = [Stage(name="sft", kind="sft", data=data), Stage(name="align", kind="alignment", data=data)]
    recipe = Recipe(path=tmp_path / "r.yaml", name="r", base_model=str(tmp_path / "m"), output_dir=tmp_path / "out",
                    stages=stages)
    with caplog.at_level("WARNING"):
        preflight(recipe, stages)
    assert stages[1].args["share_context"] is False and "share_context" not in stages[0].args
    (line,) = [r.getMessage() for r in caplog.records if "shared context off" in r.getMessage()]
    assert "'align'" in line and "chunked_attention" in line
