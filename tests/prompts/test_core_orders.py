"""Order schemes: `paper` = the reference's permutations; `hash:SEED` stable across processes and selections."""
import json
import os
import subprocess
import sys

import pytest

import reference_oracle as ref
from longrm_tasks.data import load_benchmark, load_config_file, select
from longrm_tasks.data.synthetic import generate_config
from longrm_tasks.prompts.orders import OrderScheme, hash_order

from project import ROOT  # noqa: E402
WORDS = {b: 20 for b in ("4k", "8k", "16k", "32k", "64k", "128k")}


@pytest.fixture
def config_file(tmp_path):
    records = list(generate_config("Summ", 37, 29, context_words=WORDS))
    path = tmp_path / "Summ.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


def test_paper_orders_equal_the_reference_loop(config_file):
    path, records = config_file
    items = load_config_file(path, "Summ")
    expected = ref.reference_orders(records)
    assert [it.paper_order for it in items] == [expected[i] for i in range(len(records))]
    assert all(OrderScheme.parse("paper").orders_for(it) == [expected[it.index]] for it in items)


def test_paper_orders_survive_selection(config_file):
    path, records = config_file
    expected = ref.reference_orders(records)
    pairs = select(load_config_file(path, "Summ"), tasktypes="PairWise", lengths="4k,16k")
    assert pairs and all(it.paper_order == expected[it.index] for it in pairs)


def test_both_gives_the_order_and_its_reverse(config_file):
    path, _ = config_file
    for it in load_config_file(path, "Summ"):
        a, b = OrderScheme.parse("both").orders_for(it)
        assert b == a[::-1] and sorted(a) == list(range(it.n))


def test_hash_orders_are_stable_across_processes_and_selections(config_file):
    path, _ = config_file
    items = load_config_file(path, "Summ")
    scheme = OrderScheme.parse("hash:7")
    here = {it.id: scheme.orders_for(it)[0] for it in items}
    # a selection sees the same permutation per record
    subset = select(items, tasktypes="BestOfN")
    assert all(scheme.orders_for(it)[0] == here[it.id] for it in subset)
    code = (f"import json; from longrm_tasks.data import load_config_file; "
            f"from longrm_tasks.prompts.orders import OrderScheme;"
            f"s=OrderScheme.parse('hash:7'); print(json.dumps({{it.id: s.orders_for(it)[0] for it in "
            f"load_config_file({str(path)!r}, 'Summ')[::-1]}}))")
    for hashseed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert json.loads(out.stdout) == here
    # different seeds give different permutations somewhere; every order is a permutation
    other = {it.id: OrderScheme.parse("hash:8").orders_for(it)[0] for it in items}
    assert other != here and all(sorted(o) == list(range(len(o))) for o in here.values())


def test_hash_order_depends_on_config_and_id_only():
    assert hash_order("1", "Summ", "x", 4) == hash_order("1", "Summ", "x", 4)
    assert len({tuple(hash_order("1", "Summ", f"id{i}", 4)) for i in range(50)}) > 5


def test_bad_scheme_is_refused():
    with pytest.raises(ValueError, match="hash:SEED"):
        OrderScheme.parse("random")


def test_bundled_sample_is_valid_and_marked_synthetic():
    bench = load_benchmark("sample")
    assert len(bench.files) == 7 and not bench.warnings
    assert {it.source for it in bench.items} == {"synthetic"}
    assert {it.tasktype for it in bench.items} == {"PairWise", "BestOfN"}


def test_unsorted_candidates_are_reported(tmp_path):
    rec = next(r for r in generate_config("Code", 0, 2, context_words=WORDS))
    rec["candidates_score"] = sorted(rec["candidates_score"])
    path = tmp_path / "Code.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    warnings = []
    load_config_file(path, "Code", warnings)
    assert len(warnings) == 1 and "not ordered best" in warnings[0] and f"{path}:1" in warnings[0]
