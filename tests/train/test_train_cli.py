"""`longrm train`: the shipped tiny recipe end to end, resume after an interrupt, errors, accelerate configs."""
import json

import pytest

from longrm_tasks.cli import main as longrm

from project import ROOT  # noqa: E402
FAST = ["--set", "defaults.disable_tqdm=true"]


def test_tiny_recipe_runs_sft_then_alignment_from_the_bundled_sample(tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)  # nothing outside the package is read: no sibling checkout, no data folder
    out = tmp_path / "runs"
    status = longrm(["train", "--config", str(ROOT / "recipes" / "tiny_cpu.yaml"), "--output-dir", str(out),
                     "--set", "stages.sft.args.max_steps=2", "--set", "stages.alignment.args.max_steps=1",
                     *FAST])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"stage"')]
    assert [line["stage"] for line in lines] == ["sft", "alignment"]
    assert lines[0]["data"]["train"]["truncated"] == 20  # every sample prompt is cut, none dropped
    alignment = lines[1]["data"]["train"]
    assert alignment["examples"] == alignment["truncated"] == 20
    assert alignment["key_passages_kept"] == 20 and alignment["tails_cut"] == 0  # evidence and question kept
    assert alignment["extra_rejected_ignored"] == 20  # V = 2 of the 4 rejected judgments per record
    for stage, start in (("sft", out / "base-model"), ("alignment", out / "sft")):
        marker = json.loads((out / stage / "longrm_stage.json").read_text())
        assert marker["input_model"] == str(start)  # each stage starts from the previous output
        model = AutoModelForCausalLM.from_pretrained(out / stage)
        assert model.config.num_hidden_layers == 2
        card = (out / stage / "README.md").read_text()
        assert "tiny_cpu" in card and f"`{stage}`" in card and f"`sample:{stage}`" in card
        assert '"max_length"' in card
        # no machine path in a card: it travels with the model
        assert str(tmp_path) not in card and str(ROOT) not in card
        assert "key passage kept whole in 20" in card
    assert "started from | `../sft`" in (out / "alignment" / "README.md").read_text()
    # Finished stages are skipped with --resume; without it the command refuses to overwrite.
    assert longrm(["train", "--config", str(ROOT / "recipes" / "tiny_cpu.yaml"), "--output-dir", str(out),
                   "--resume"]) == 0
    assert longrm(["train", "--config", str(ROOT / "recipes" / "tiny_cpu.yaml"), "--output-dir", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def _recipe(tmp_path):
    from longrm_tasks.train.learning_check import make_items, write_jsonl
    import random

    data = write_jsonl(tmp_path / "sft.jsonl", make_items(8, context_words=20, num_rejected=1,
                                                             rng=random.Random(0)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
name: resume_check
base_model: tiny-random
defaults: {{per_device_train_batch_size: 2, max_steps: 4, save_steps: 1, logging_steps: 1, bf16: false,
           activation_checkpointing: false, use_cpu: true, max_length: 64, disable_tqdm: true}}
stages:
  - {{name: sft, kind: sft, data: {data}}}
""")
    return recipe


def _interrupted_after_checkpoint_2(tmp_path):
    """A run of the 4-step recipe stopped right after saving checkpoint-2: (recipe path, output dir)."""
    from transformers import TrainerCallback

    from longrm_tasks.train.recipe import load_recipe
    from longrm_tasks.train.runner import run_recipe

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated interrupt after checkpoint-2")

    recipe_path = _recipe(tmp_path)
    out = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(recipe_path, [f"output_dir={out}"]), callbacks=[Interrupt()])
    assert (out / "sft" / "checkpoint-2").is_dir() and not (out / "sft" / "longrm_stage.json").exists()
    return recipe_path, out


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    recipe_path, out = _interrupted_after_checkpoint_2(tmp_path)
    assert longrm(["train", "--config", str(recipe_path), "--output-dir", str(out), "--resume"]) == 0
    marker = json.loads((out / "sft" / "longrm_stage.json").read_text())
    assert marker["resumed_from"] == "checkpoint-2"
    assert marker["global_step"] == 4 and marker["steps_this_run"] == 2  # continued, not restarted


def test_resume_after_a_kill_during_a_checkpoint_save_uses_the_last_complete_checkpoint(tmp_path, caplog):
    recipe_path, out = _interrupted_after_checkpoint_2(tmp_path)
    # A kill in the middle of saving checkpoint-2: the Trainer writes trainer_state.json last.
    (out / "sft" / "checkpoint-2" / "trainer_state.json").unlink()
    assert (out / "sft" / "checkpoint-1" / "trainer_state.json").is_file()

    assert longrm(["train", "--config", str(recipe_path), "--output-dir", str(out), "--resume"]) == 0
    marker = json.loads((out / "sft" / "longrm_stage.json").read_text())
    assert marker["resumed_from"] == "checkpoint-1" and marker["incomplete_checkpoints_set_aside"] == ["checkpoint-2"]
    assert marker["global_step"] == 4 and marker["steps_this_run"] == 3
    assert (out / "sft" / "incomplete-checkpoint-2").is_dir()  # kept for inspection, out of the Trainer's way
    assert "checkpoint-2 is incomplete" in caplog.text and "resuming from checkpoint-1" in caplog.text


def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path, capsys, monkeypatch):
    from longrm_tasks.train import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_stage", interrupted)
    recipe = _recipe(tmp_path)
    out = tmp_path / "my runs"
    assert longrm(["train", "--config", str(recipe), "--output-dir", str(out), "--set", "defaults.seed=3"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err
    assert f"--config {recipe} --set defaults.seed=3 --output-dir '{out}' --resume" in err


def test_output_dir_under_a_file_is_one_line_before_training(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert longrm(["train", "--config", str(recipe), "--output-dir", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--output-dir" in err and "is a file" in err


def test_set_with_a_wrong_type_or_unknown_key_is_one_line(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert longrm(["train", "--config", str(recipe), "--set", "defaults.learning_rate=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "defaults.learning_rate" in err and "must be float" in err
    assert longrm(["train", "--config", str(recipe), "--set", "defaults.max_step=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'max_steps'?" in err


def test_bad_recipe_is_one_line_naming_file_and_key(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("kind: sft", "kind: ppo"))
    assert longrm(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(recipe) in err and "stages[0] (sft).kind" in err
    assert longrm(["train", "--config", str(_recipe(tmp_path)), "--stage", "nope"]) == 2
    assert "no stage 'nope'" in capsys.readouterr().err


def test_missing_data_fails_before_training(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    recipe.write_text(recipe.read_text() + "  - {name: rm, kind: reward, data: \"${LONGRM_UNSET_VAR}/x.jsonl\"}\n")
    assert longrm(["train", "--config", str(recipe), "--output-dir", str(tmp_path / "o")]) == 2
    assert "environment variable" in capsys.readouterr().err
    assert not (tmp_path / "o" / "sft").exists()


@pytest.mark.parametrize("name, kind, extra", [
    ("zero3.yaml", "DEEPSPEED", {}),
    ("fsdp2.yaml", "FSDP", {}),
    ("fsdp2_context_parallel.yaml", "FSDP", {"parallelism_config_cp_size": 8}),
])
def test_accelerate_configs_parse(name, kind, extra):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "recipes" / "accelerate" / name))
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
    for key, value in extra.items():
        assert config.parallelism_config[key] == value
