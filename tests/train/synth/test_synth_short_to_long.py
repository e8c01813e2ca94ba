"""`longrm synth short-to-long`: lengths, depth, tagging, determinism, skipped items, bad input."""
import json
import os
import random
import re

from pathlib import Path

import pytest

from longrm_tasks.cli import main
from longrm_tasks.errors import InputError
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.train.synth.short_to_long import (
    AUTHORS_SYSTEM_PROMPT, DistractorCorpus, ShortRecord, ShortToLong, ShortToLongConfig, count_prompt_tokens,
    parse_depths, parse_length, user_message)

WORDS = "alpha beta gamma delta river stone city market winter engine harbor violet copper".split()
KEY = "The door of the lighthouse is painted bright orange."
# The authors' Stage II sample carries no license, so it is not copied here: point
# LONGRM_ALIGNMENT_SAMPLE at a copy of it to run the tests that compare with it.
SAMPLE = Path(os.environ["LONGRM_ALIGNMENT_SAMPLE"]) if os.environ.get("LONGRM_ALIGNMENT_SAMPLE") else None


def _documents(n, seed=0):
    rng = random.Random(seed)
    # one line per document, so the lines before the key passage count the documents before it
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2l")
    build_tokenizer().save_pretrained(root / "tok")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in _documents(400)))
    (root / "short.jsonl").write_text(
        json.dumps({"id": "door", "question": "What colour is the door?", "key_passages": [KEY],
                    "responses": ["Orange.", "Blue."]}) + "\n"
        + json.dumps({"id": "bridge", "question": "Who built the bridge?",
                      "key_passage": "The bridge was built by Ada in 1901."}) + "\n")
    return root


def _build(tokenizer, lengths=(3072,), depths=(0.5,), documents=None, record=None, **config):
    corpus = DistractorCorpus(documents or _documents(400), tokenizer)
    builder = ShortToLong(corpus, tokenizer, ShortToLongConfig(lengths=lengths, depths=depths, **config))
    record = record or ShortRecord("door", "What colour is the door?", (KEY,), ("Orange.",))
    return builder.build(record), builder.summary


def _context(item):
    user = item["messages"][1]["content"]
    return user[user.index("<context>\n") + len("<context>\n"):user.index("</context>")]


@pytest.mark.skipif(SAMPLE is None or not SAMPLE.is_file(),
                    reason="set LONGRM_ALIGNMENT_SAMPLE to the authors' Stage II sample to run this")
def test_layout_is_the_authors():
    for line in SAMPLE.read_text().splitlines():
        record = json.loads(line)
        system, user = (m["content"] for m in record["messages"])
        tag = re.search(r"between <([^<>]+)> and", system).group(1)
        assert AUTHORS_SYSTEM_PROMPT.replace("{tag}", tag) == system
        context = user[len("<context>\n"):user.index("</context>")]
        assert user_message(context, record["query"], record["answer"]) == user


def test_lengths_reach_target_within_tolerance(tokenizer):
    items, summary = _build(tokenizer, lengths=(1024, 2048, 3072), tolerance=0.02)
    assert summary.written == 3 and summary.too_short == summary.too_long == 0
    for item in items:
        target = item["target_tokens"]
        # prompt_tokens is the exact chat-templated length, never over the target
        assert item["prompt_tokens"] == count_prompt_tokens(tokenizer, item["messages"])
        assert 0.98 * target <= item["prompt_tokens"] <= target


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 1.0])
def test_key_passage_tagged_at_requested_depth(tokenizer, depth):
    (item,), _ = _build(tokenizer, depths=(depth,))
    tag = item["key_tag"]
    system, user = item["messages"][0]["content"], item["messages"][1]["content"]
    assert re.fullmatch(r"[A-Z0-9]{2,4}", tag) and f"between <{tag}> and </{tag}>" in system
    context = _context(item)
    block = f"<{tag}>\n{KEY}\n</{tag}>\n"
    assert context.count(f"<{tag}>") == 1 and block in context
    before, after = context.split(block)
    assert before.count("\n") == item["key_passage_position"]  # documents before the key passage
    assert abs(item["key_passage_depth"] - depth) < 0.05
    # the depth is a share of the distractor tokens, so measure it independently
    n_before = len(tokenizer(before)["input_ids"])
    n_all = n_before + len(tokenizer(after)["input_ids"])
    assert abs(n_before / n_all - depth) < 0.05
    assert user.endswith("<prompt>\nWhat colour is the door?\n</prompt>\n\nThe following is the given response "
                         "to evaluate.\n<response>\nOrange.\n</response>\n\n")
    assert item["answer"] == "Orange." and item["query"] == "What colour is the door?"


def test_depth_stays_precise_with_long_documents(tokenizer):
    # three book-like documents: document boundaries alone would allow depths 0, 1/3, 2/3, 1 only
    books = ["\n".join(_documents(120, seed=s)) for s in range(3)]
    for depth in (0.2, 0.5, 0.9):
        (item,), _ = _build(tokenizer, lengths=(4096,), depths=(depth,), documents=books)
        assert abs(item["key_passage_depth"] - depth) < 0.03
        block_start = _context(item).index(f"<{item['key_tag']}>")
        assert _context(item)[block_start - 1] == "\n"  # split at a line break, never mid-line


def test_grid_of_lengths_depths_responses_with_fixed_tag_and_passages(tokenizer):
    record = ShortRecord("door", "Q?", ("first key fact.", "second key fact."), ("A.", "B."), reference="A.")
    items, summary = _build(tokenizer, lengths=(1024, 2048), depths=(0.0, 1.0), record=record, tag="LD")
    assert summary.written == len(items) == 2 * 2 * 2
    assert [i["id"] for i in items[:4]] == ["door/1024/0/0", "door/1024/0/1", "door/1024/1/0", "door/1024/1/1"]
    assert all("<LD>\nfirst key fact.\n\nsecond key fact.\n</LD>\n" in _context(i) for i in items)
    assert _context(items[0]).startswith("<LD>\n") and _context(items[2]).endswith("</LD>\n")
    # both responses of a slot share distractors: the contexts differ only where the last one is trimmed
    assert _context(items[0])[:200] == _context(items[1])[:200]
    assert items[0]["reference"] == "A."


def test_uniform_depths_are_seeded_per_item(tokenizer):
    a, _ = _build(tokenizer, lengths=(1024, 2048, 3072), depths=None, seed=3)
    b, _ = _build(tokenizer, lengths=(1024, 2048, 3072), depths=None, seed=3)
    assert a == b
    assert len({round(i["key_passage_depth"], 1) for i in a}) > 1


def test_too_short_and_too_long_are_counted_not_written(tokenizer):
    items, summary = _build(tokenizer, lengths=(4096,), documents=_documents(5))
    assert items == [] and summary.too_short == 1 and summary.skipped_ids == ["door/4096/0/0 (too short)"]
    items, summary = _build(tokenizer, lengths=(64,))
    assert items == [] and summary.too_long == 1


def test_cli_is_deterministic_and_reports_counts(files, capsys):
    argv = ["synth", "short-to-long", "--records", str(files / "short.jsonl"), "--corpus",
            str(files / "corpus.jsonl"), "--tokenizer", str(files / "tok"), "--lengths", "1k,64k",
            "--depths", "0,0.5"]
    outputs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(argv + ["--seed", seed, "-o", str(files / f"{name}.jsonl")]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        outputs.append((files / f"{name}.jsonl").read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    # 1k: 2 depths x (2 responses + 1 record without responses); 64k needs more text than the corpus holds
    assert summary["written"] == 6 and summary["too_short"] == 6 and summary["records"] == 2
    first = json.loads(outputs[0].splitlines()[0])
    assert first["id"] == "door/1024/0/0" and first["messages"][0]["role"] == "system"


def test_cli_custom_system_prompt_and_fixed_tag(files, tmp_path, capsys):
    prompt = tmp_path / "system.txt"
    prompt.write_text("Judge the answer using <{tag}>...</{tag}>. Reply [Score: {an integer}].")
    out = tmp_path / "out.jsonl"
    assert main(["synth", "short-to-long", "--records", str(files / "short.jsonl"), "--corpus",
                 str(files / "corpus.jsonl"), "--tokenizer", str(files / "tok"), "--lengths", "512",
                 "--tag", "LD", "--system-prompt", str(prompt), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and summary["too_long"] == 0
    item = json.loads(out.read_text().splitlines()[0])
    assert item["messages"][0]["content"] == "Judge the answer using <LD>...</LD>. Reply [Score: {an integer}]."
    assert item["key_tag"] == "LD" and "<LD>\n" + KEY + "\n</LD>\n" in item["messages"][1]["content"]


def test_parsers_and_bad_input(files, tmp_path, capsys):
    assert parse_length("4k") == 4096 and parse_length("128K") == 131072 and parse_length("700") == 700
    assert parse_depths("uniform") is None and parse_depths("0,0.5,1") == (0.0, 0.5, 1.0)
    with pytest.raises(InputError, match="depths"):
        parse_depths("1.5")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "key_passages": ["k"]}) + "\n"
                   + json.dumps({"key_passages": ["k"]}) + "\n")
    code = main(["synth", "short-to-long", "--records", str(bad), "--corpus", str(files / "corpus.jsonl"),
                 "--tokenizer", str(files / "tok"), "-o", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert f"{bad}:2: field 'question'" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.jsonl*"))  # no output, no half-written leftover
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:1: field 'text'"):
        DistractorCorpus.from_paths([corpus], None)
