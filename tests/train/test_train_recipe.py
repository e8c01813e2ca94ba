"""Recipe YAML -> dataclasses: paper values, overrides, and errors that name file and key."""
from pathlib import Path

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.train.recipe import load_recipe
from longrm_tasks.train.runner import accumulation_steps, build_config, data_parallel_size

from project import RECIPES  # noqa: E402


def write(tmp_path, text, name="r.yaml"):
    (tmp_path / "d.jsonl").write_text("{}\n")
    path = tmp_path / name
    path.write_text(text)
    return path


BASIC = """
base_model: some/model
defaults: {learning_rate: 2e-6, max_length: 64}
stages:
  - {name: sft, kind: sft, data: d.jsonl}
  - {name: rm, kind: reward, data: d.jsonl, args: {max_length: 32}}
"""


# Tables 4-5 of the paper (Stage I / Stage II) and the authors' code where the paper is silent.
PAPER = {"max_length": 131072, "learning_rate": 2e-6, "num_train_epochs": 1, "per_device_train_batch_size": 1,
         "adam_beta1": 0.9, "adam_beta2": 0.95, "weight_decay": 0.0, "max_grad_norm": 1.0,
         "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
         "warmup_steps": 0.03, "bf16": True, "activation_checkpointing": True}


def test_generative_recipe_holds_tables_4_and_5():
    gen = load_recipe(RECIPES / "generative_longrm.yaml")
    assert [(s.name, s.kind) for s in gen.stages] == [("sft", "sft"), ("alignment", "alignment")]
    for stage in gen.stages:
        assert {k: stage.args[k] for k in PAPER} == PAPER
        assert stage.global_batch_size == 32
    align = gen.stage("alignment").args
    # Table 5 (beta 2.5, gamma 0.5, NLL 0.05) and V = 2 from section 5.1
    assert (align["beta"], align["gamma"], align["nll_weight"], align["num_rejected"]) == (2.5, 0.5, 0.05, 2)


def test_discriminative_recipe_holds_the_reference_lora_and_loss():
    disc = load_recipe(RECIPES / "discriminative_longrm.yaml")
    (reward,) = disc.stages
    assert reward.kind == "reward" and {k: reward.args[k] for k in PAPER} == PAPER
    assert reward.lora == {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
    assert reward.max_records == 6000 and reward.args["rejected_aggregation"] == "mean"
    assert reward.args["num_rejected"] == 2
    assert reward.global_batch_size == 32


@pytest.mark.parametrize("name", ["generative_longrm.yaml", "discriminative_longrm.yaml", "tiny_cpu.yaml"])
def test_recipe_configs_build_and_the_schedule_ends_at_a_tenth_of_the_peak(name, tmp_path):
    """Each stage's config accepts the recipe, and the optimiser/schedule it builds are the paper's."""
    import torch
    from transformers import get_scheduler

    recipe = load_recipe(RECIPES / name, ["defaults.use_cpu=true", "defaults.bf16=false"])
    for stage in recipe.stages:
        args = build_config(stage, tmp_path / stage.name)
        assert args.activation_checkpointing is True  # on in every recipe
        assert (args.adam_beta1, args.adam_beta2) == (0.9, 0.95)
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
        steps = 1000
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(steps),
                                  num_training_steps=steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        assert args.get_warmup_steps(steps) == 30  # warmup ratio 0.03
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * args.learning_rate)


def test_paths_defaults_and_number_coercion(tmp_path):
    recipe = load_recipe(write(tmp_path, BASIC))
    sft, rm = recipe.stages
    assert sft.data == tmp_path / "d.jsonl"  # relative to the recipe file
    assert sft.args == {"learning_rate": 2e-6, "max_length": 64}  # "2e-6" is a float, not a string
    assert rm.args["max_length"] == 32 and rm.model_from == "previous"
    assert recipe.output_dir == Path.cwd() / "runs" / "r"


def test_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.jsonl").write_text("{}\n")
    recipe = load_recipe(write(tmp_path, BASIC), [
        "stages.rm.args.max_steps=3", "defaults.learning_rate=1e-5", "stages.sft.data=other.jsonl",
        "output_dir=out", "stages.1.global_batch_size=8"])
    sft, rm = recipe.stages
    assert rm.args["max_steps"] == 3 and sft.args["learning_rate"] == 1e-5
    assert sft.data == tmp_path / "other.jsonl" and recipe.output_dir == tmp_path / "out"
    assert rm.global_batch_size == 8


@pytest.mark.parametrize("text, field, message", [
    (BASIC.replace("kind: reward", "kind: dpo"), "stages[1] (rm).kind", "must be one of"),
    (BASIC.replace("max_length: 32", "max_lenght: 32"), "stages[1] (rm).args.max_lenght", "not a field of RewardStageConfig"),
    (BASIC.replace("base_model: some/model", ""), "base_model", "required"),
    (BASIC.replace("data: d.jsonl}", "}", 1), "stages[0] (sft).data", "required"),
    (BASIC.replace("args: {max_length: 32}", "model_from: later"), "stages[1] (rm).model_from", "earlier stage"),
    (BASIC.replace("stages:", "stagez:"), None, "unknown key"),
])
def test_errors_name_the_file_and_key(tmp_path, text, field, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as err:
        load_recipe(path)
    assert err.value.path == str(path) and err.value.field == field


def test_bad_override_and_bad_yaml(tmp_path):
    path = write(tmp_path, BASIC)
    with pytest.raises(InputError, match="no stage named 'nope'"):
        load_recipe(path, ["stages.nope.args.max_steps=1"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        load_recipe(path, ["max_steps"])
    bad = write(tmp_path, "stages: [\n  {name: x\n", "bad.yaml")
    with pytest.raises(InputError, match="invalid YAML") as err:
        load_recipe(bad)
    assert err.value.line is not None


def test_global_batch_size_sets_accumulation_from_the_data_parallel_size(tmp_path, monkeypatch):
    recipe = load_recipe(write(tmp_path, BASIC), ["stages.sft.global_batch_size=32",
                                                  "stages.sft.args.per_device_train_batch_size=2",
                                                  "stages.sft.args.use_cpu=true"])
    assert build_config(recipe.stage("sft"), tmp_path / "o").gradient_accumulation_steps == 16  # 1 process
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert data_parallel_size() == 8
    monkeypatch.setenv("PARALLELISM_CONFIG_CP_SIZE", "8")  # one context-parallel group: DP size 1
    assert data_parallel_size() == 1
    assert accumulation_steps(32, 1, 8, "sft") == 4
    with pytest.raises(InputError, match="not a multiple"):
        accumulation_steps(32, 1, 3, "sft")


@pytest.mark.parametrize("override, field, message", [
    ("defaults.learning_rate=fast", "defaults.learning_rate", "must be float (SFTConfig.learning_rate), got 'fast'"),
    ("stages.rm.args.max_steps=3.5", "stages[1] (rm).args.max_steps", "must be int"),
    ("stages.sft.args.bf16=maybe", "stages[0] (sft).args.bf16", "must be bool or null"),
    ("defaults.lr_scheduler_type=cosine_floor", "defaults.lr_scheduler_type", "one of 'linear', 'cosine'"),
    ("defaults.learning_rat=1e-5", "defaults.learning_rat", "did you mean 'learning_rate'?"),
])
def test_set_values_of_the_wrong_type_or_unknown_keys_are_one_line(tmp_path, override, field, message):
    path = write(tmp_path, BASIC)
    with pytest.raises(InputError) as err:
        load_recipe(path, [override])
    assert err.value.field == field and message in err.value.message
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("stages.sfy.args.max_steps=1", "no stage named 'sfy' (did you mean 'sft'?)"),
    ("stages.sft.arg.max_steps=1", "unknown key 'arg' (did you mean 'args'?)"),
    ("defualts.seed=1", "unknown key 'defualts' (did you mean 'defaults'?)"),
    ("stages.sft.kind=sf", "did you mean 'sft'?"),
])
def test_misspelt_recipe_keys_name_the_closest_known_one(tmp_path, override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_recipe(write(tmp_path, BASIC), [override])


def test_bundled_samples_and_max_records(tmp_path):
    from longrm_tasks.train.records import DataFile, read_jsonl
    from longrm_tasks.train.sample.generate import sample_path

    recipe = load_recipe(write(tmp_path, BASIC.replace("data: d.jsonl}", "data: sample:alignment, max_records: 3}")))
    rm = recipe.stage("sft")
    assert rm.data == sample_path("alignment") and rm.data.is_file() and rm.max_records == 3
    assert len(list(read_jsonl(DataFile(rm.data, rm.max_records)))) == 3
    assert len(list(read_jsonl(rm.data))) == 20
    with pytest.raises(InputError, match="no bundled sample 'alignmnt' \\(did you mean 'alignment'\\?\\)"):
        load_recipe(write(tmp_path, BASIC.replace("data: d.jsonl}", "data: sample:alignmnt}")))
    with pytest.raises(InputError, match="positive integer"):
        load_recipe(write(tmp_path, BASIC.replace("data: d.jsonl}", "data: d.jsonl, max_records: 0}")))


def test_bundled_sample_is_synthetic_and_regenerates_byte_for_byte(tmp_path, monkeypatch):
    import json

    from longrm_tasks.train.sample import generate as samples

    for name in samples.SAMPLES:
        lines = samples.sample_path(name).read_text().splitlines()
        assert len(lines) == samples.RECORDS and all(json.loads(l)["source"] == "synthetic" for l in lines)
    alignment = [json.loads(l) for l in samples.sample_path("alignment").read_text().splitlines()]
    assert all(len(r["rejected"]) == 4 and r["chosen"].startswith("[Analysis]") for r in alignment)
    monkeypatch.setattr(samples, "SAMPLE_DIR", tmp_path)
    samples.main()
    for name, file in samples.SAMPLES.items():
        assert (tmp_path / file).read_bytes() == (Path(samples.__file__).parent / file).read_bytes()


def test_stage_table_resolves_every_kind_lazily():
    import sys

    from longrm_tasks.train.stages import STAGES, StageKind, StageTable, resolve

    assert STAGES.names() == ("sft", "alignment", "reward")
    for name in STAGES.names():
        kind = STAGES.get(name)
        assert callable(kind.trainer_factory()) and kind.config_class().__name__.endswith("Config")
        from peft import TaskType

        assert TaskType[kind.peft_task] in (TaskType.CAUSAL_LM, TaskType.SEQ_CLS)
    assert STAGES.get("reward").peft_task == "SEQ_CLS"
    with pytest.raises(InputError, match="unknown stage kind 'ppo'"):
        STAGES.get("ppo")
    table = StageTable()
    table.register(StageKind("x", "not_a_module_anyone_has:Config", "nor_this:factory", "CAUSAL_LM", "t"))
    assert "not_a_module_anyone_has" not in sys.modules  # nothing imported until used
    with pytest.raises(ValueError, match="already registered"):
        table.register(StageKind("x", "a:b", "c:d", "CAUSAL_LM", "t"))
    assert resolve("longrm_tasks.train.stages:STAGES") is STAGES


def test_preflight_turns_shared_context_off_before_any_stage_for_a_model_that_cannot_share(tmp_path, caplog):
    from longrm_tasks.testing import save_tiny_model
    from longrm_tasks.train.runner import preflight

    base = save_tiny_model(tmp_path / "base", hidden=16, layers=1)
    config = (base / "config.json").read_text()
    (base / "config.json").write_text(config.replace('"model_type"', '"attention_chunk_size": 8,\n  "model_type"'))
    recipe = load_recipe(write(tmp_path, f"""
base_model: {base}
stages:
  - {{name: sft, kind: sft, data: d.jsonl}}
  - {{name: alignment, kind: alignment, data: d.jsonl}}
"""), [f"output_dir={tmp_path / 'out'}"])
    preflight(recipe, recipe.stages)
    assert recipe.stage("alignment").args["share_context"] is False
    assert "shared context off" in caplog.text and "chunked attention" in caplog.text
    assert not (tmp_path / "out" / "sft" / "longrm_stage.json").exists()  # nothing trained
