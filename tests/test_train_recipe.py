"""Recipe YAML -> dataclasses: paper values, overrides, and errors that name file and key."""
from pathlib import Path

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.train.recipe import load_recipe
from longrm_tasks.train.runner import accumulation_steps, build_config, data_parallel_size

RECIPES = Path(__file__).parents[1] / "recipes"


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


def test_paper_recipes_hold_the_paper_hyper_parameters():
    gen = load_recipe(RECIPES / "generative_longrm.yaml")
    assert [(s.name, s.kind) for s in gen.stages] == [("sft", "sft"), ("alignment", "alignment")]
    for stage in gen.stages:
        assert stage.args["max_length"] == 131072 and stage.args["learning_rate"] == 2e-6
        assert stage.args["num_train_epochs"] == 1 and stage.args["bf16"] is True
        assert stage.global_batch_size == 32
    align = gen.stage("alignment").args
    assert (align["beta"], align["gamma"], align["nll_weight"], align["num_rejected"]) == (2.5, 0.5, 0.05, 4)
    disc = load_recipe(RECIPES / "discriminative_longrm.yaml")
    (reward,) = disc.stages
    assert reward.kind == "reward" and reward.lora["r"] > 0 and reward.args["learning_rate"] == 2e-6


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
    (BASIC.replace("max_length: 32", "max_lenght: 32"), "stages[1] (rm).args.max_lenght", "not a field of RewardConfig"),
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
