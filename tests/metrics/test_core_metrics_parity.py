"""`longrm score` reproduces the reference evaluator's metrics exactly, on odd outputs too."""
import itertools
import json
import random

import pytest

import reference_oracle as ref
from longrm_tasks.cli import main
from longrm_tasks.data.schema import LENGTH_BUCKETS
from longrm_tasks.verdicts.parsing import parse_judgment, scores_to_ranks

PAIR_OUTPUTS = [
    "Both are fine. [[A]]", "[[B]]", "I pick [[B]] ... no, final: [[A]]", "[[A]] or maybe [[B]]", "[[a]]",
    "[[ A ]]", "Assistant A is better", "", "no verdict at all", "[A]", "[[C]]",
]
RANK_OUTPUTS = [
    "[Analysis]\nok\n[Ranking]\n[[C>A>B]]", "[[A>B]]", "[[B>A>C>D]]", "[[A>B>C>D>E]]", "[[c>a>b]]",
    "[[C > A > B]]", "[Assistant A > Assistant B]", "[[Assistant C > Assistant A > Assistant B]]",
    "[[A>A>B]]", "[[A>B]] then [[B>A]]", "A>B>C", "no ranking", "[[A>B>C>D>A>B>C>D>A>B>C]]",
    "[Ranking] [[B>A]] [[A>B]]", "[AB>C]", "[1>2>3]", "[[A:>B:>C]]", "[[ >A]]", "[[A\n>B]]", "[[B>C>A>D]]",
]


def _prediction_rows(rng, n_rows=400):
    rows = []
    for i in range(n_rows):
        kind = rng.choice(["PairWise", "BestOfN"])
        n = 2 if kind == "PairWise" else rng.choice([2, 3, 4])
        order = list(range(n))
        rng.shuffle(order)
        out = rng.choice(PAIR_OUTPUTS if kind == "PairWise" else RANK_OUTPUTS)
        rows.append(dict(output=out, shuffled_order=order, subset=rng.choice(ref.TASKS[:5]),  # Code, Math empty
                         tasktype=kind, subtype=rng.choice(["same", "gpt_vs_llama"]) if n == 2 and kind == "PairWise" else n,
                         ctx_length=rng.choice(LENGTH_BUCKETS[:-1]), index=i))  # 128k left empty
    return rows


def _write(tmp_path, rows, name="preds.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _score(tmp_path, paths, *extra):
    out = tmp_path / "metrics.json"
    assert main(["score", "--predictions", *map(str, paths), "--json", str(out), "--quiet", *extra]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generative_outputs_match_reference_exactly(tmp_path, seed):
    rows = _prediction_rows(random.Random(seed))
    ours = _score(tmp_path, [_write(tmp_path, rows)])
    theirs = ref.evaluate(rows)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert ours["Length Avg"] == pytest.approx(sum(theirs[b] for b in LENGTH_BUCKETS) / 6, abs=1e-9)
    # empty groups score 0, as in the reference, and say so in the counts
    assert ours["Code"] == 0 and ours["extra"]["counts"]["Code"] == 0 and ours["128k"] == 0


def test_scalar_scores_with_ties_match_reference(tmp_path):
    rng = random.Random(5)
    rows = []
    for i in range(300):
        n = rng.choice([2, 2, 3, 4])
        kind = "PairWise" if n == 2 and rng.random() < 0.6 else "BestOfN"
        order = list(range(n))
        rng.shuffle(order)
        scores = [rng.choice([0.0, 1.0, 1.0, 2.5, -3.0]) for _ in range(n)]  # many ties
        rows.append(dict(output=scores, shuffled_order=order, subset=rng.choice(ref.TASKS), tasktype=kind,
                         subtype="same" if kind == "PairWise" else n, ctx_length=rng.choice(LENGTH_BUCKETS), index=i))
    ours = _score(tmp_path, [_write(tmp_path, rows)])
    theirs = ref.evaluate(rows, is_disrm=True)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_parsers_agree_with_reference_on_every_odd_output():
    for text in PAIR_OUTPUTS:
        assert (parse_judgment(text, "pair", 2) or []) == ref.extract_judgement(text, "pair")
    for text, n in itertools.product(RANK_OUTPUTS, (2, 3, 4)):
        assert (parse_judgment(text, "rank", n) or []) == ref.extract_judgement(text, "rank"), text


def test_ties_keep_the_earlier_position_ahead():
    assert scores_to_ranks([1.0, 1.0]) == [0, 1]
    assert scores_to_ranks([0.5, 2.0, 2.0]) == [2, 0, 1]
    assert scores_to_ranks([1.0, float("nan")]) is None


def test_strict_parser_takes_the_final_verdict():
    assert parse_judgment("I pick [[B]] ... no, final: [[A]]", "pair", 2, "strict") == [0, 1]
    assert parse_judgment("[[A]] or maybe [[B]]", "pair", 2, "strict") == [1, 0]
    assert parse_judgment("[Ranking] [[B>A]] [[A>B]]", "rank", 2, "strict") == [0, 1]
    assert parse_judgment("[[Assistant C > assistant a > B]]", "rank", 3, "strict") == [1, 2, 0]
    # must rank exactly the shown letters, once each
    assert parse_judgment("[[A>B]]", "rank", 3, "strict") is None
    assert parse_judgment("[[A>B>C>D]]", "rank", 3, "strict") is None
    assert parse_judgment("[[A>A>B]]", "rank", 3, "strict") is None


def test_extra_metrics_count_unparsed_and_bestofn_exact(tmp_path):
    rows = [
        dict(output="[[A]]", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="same", ctx_length="4k", id="p1"),
        dict(output="[[A]]", shuffled_order=[1, 0], subset="LongQA", tasktype="PairWise", subtype="same", ctx_length="4k", id="p1"),
        dict(output="none", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="x", ctx_length="8k", id="p2", truncated_tokens=7),
        dict(output="[[B>A>C]]", shuffled_order=[1, 0, 2], subset="Summ", tasktype="BestOfN", subtype=3, ctx_length="4k", id="b1"),
        dict(output="[[A>B>C]]", shuffled_order=[1, 0, 2], subset="Summ", tasktype="BestOfN", subtype=3, ctx_length="4k", id="b2"),
    ]
    m = _score(tmp_path, [_write(tmp_path, rows)])
    e = m["extra"]
    assert e["unparsed"] == 1 and e["unparsed_rate"] == pytest.approx(1 / 5)
    assert e["truncated"] == 1 and e["truncated_tokens"] == 7
    assert e["bestofn_exact_match"]["Rank3"] == pytest.approx(0.5)
    assert e["bestofn_top1"]["Rank3"] == pytest.approx(0.5)
    assert m["Rank3"] == pytest.approx((1 + 1 / 3) / 2)
    both = e["both_orders"]
    assert both["pairs"] == 1 and both["consistent_accuracy"] == 0.0 and both["same_position_rate"] == 1.0
    assert e["position_a_rate"] == pytest.approx(1.0)


def test_reference_output_folder_scores_like_files(tmp_path):
    rows = _prediction_rows(random.Random(9), 60)
    folder = tmp_path / "run"
    folder.mkdir()
    _write(folder, rows[:30], "LongQA.jsonl")
    _write(folder, rows[30:], "Summ.jsonl")
    assert _score(tmp_path, [folder])["AVG"] == pytest.approx(ref.evaluate(rows)["AVG"], abs=1e-12)
