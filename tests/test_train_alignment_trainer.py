"""AlignmentTrainer end to end on a tiny model: trains, logs TRL's metrics, checkpoints and resumes."""
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from longrm_tasks.testing import build_model
from longrm_tasks.train.alignment_config import AlignmentConfig
from longrm_tasks.train.alignment_data import load_alignment_dataset
from longrm_tasks.train.alignment_trainer import AlignmentTrainer


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
