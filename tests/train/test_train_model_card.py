"""Model cards: sentences taken from the fitting counts, and no path of the training machine."""
from pathlib import Path

from longrm_tasks.train.model_card import fitting_sentences, portable_name, render_card
from longrm_tasks.train.recipe import Recipe, Stage
from longrm_tasks.train.sample.generate import sample_path


def test_fitting_sentences_follow_the_counts():
    cut_only = {"examples": 20, "truncated": 20, "tokens_dropped": 900, "key_passages_kept": 0,
                "key_passages_cut": 20, "tails_cut": 0, "longest_input": 4000}
    text = fitting_sentences("train", cut_only)
    assert "kept whole" not in text.split("key passage")[1].split(";")[0]  # never "key passage kept"
    assert "cut in 20" in text and "20 examples of 20" in text
    mixed = {**cut_only, "key_passages_kept": 5, "key_passages_cut": 3, "tails_cut": 2}
    text = fitting_sentences("eval", mixed)
    assert "kept whole in 5" in text and "cut in 3" in text and "not tagged in 12" in text
    assert "cut in 2" in text.split("</context>")[1]
    nothing = fitting_sentences("train", {"examples": 4, "truncated": 0})
    assert "nothing was cut" in nothing and "key passage" not in nothing


def test_card_holds_no_machine_path(tmp_path):
    data = tmp_path / "private" / "stage2.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    run = tmp_path / "runs" / "x"
    stages = [Stage("sft", "sft", data), Stage("alignment", "alignment", sample_path("alignment"),
                                                max_records=5)]
    recipe = Recipe(path=tmp_path / "recipes" / "mine.yaml", name="mine", base_model=str(tmp_path / "base"),
                    output_dir=run, stages=stages)
    report = {"train": {"examples": 5, "truncated": 5, "key_passages_kept": 0, "key_passages_cut": 5}}
    card = render_card(recipe=recipe, stage=stages[1], input_model=str(run / "sft"), config_values={"beta": 2.5},
                       data_report=report, metrics={"train_loss": 1.0})
    assert str(tmp_path) not in card and "/private/" not in card
    assert "`mine.yaml`" in card and "`../sft`" in card and "`sample:alignment` (first 5 records)" in card
    assert "`base`" in card  # a local base model by its folder name
    assert portable_name(data) == "stage2.jsonl" and portable_name("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert Path(portable_name(str(run / "base-model"), run_dir=run, stage_dir=run / "sft")) == Path("../base-model")
