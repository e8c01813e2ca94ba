"""`longrm synth vote`: the authors' score parsing and voting, real judge backends, the CLI."""
import json
import os
from pathlib import Path

import pytest

import local_servers  # tests/helpers/: a scripted server in a thread
from longrm_tasks.cli import main
from longrm_tasks.errors import InputError
from longrm_tasks.testing import build_tokenizer, save_tiny_model
from longrm_tasks.train.synth.judges import (
    GenerationSettings, OpenAIChatJudge, parse_judge_spec)
from longrm_tasks.train.synth.short_to_long import DistractorCorpus, ShortRecord, ShortToLong, ShortToLongConfig
from longrm_tasks.train.synth.voting import (
    ConsistencyVoter, Judgment, majority_vote, parse_score, short_messages)

# The authors' Stage II sample carries no license, so it is not copied here: point
# LONGRM_ALIGNMENT_SAMPLE at a copy of it to run the tests that compare with it.
SAMPLE = Path(os.environ["LONGRM_ALIGNMENT_SAMPLE"]) if os.environ.get("LONGRM_ALIGNMENT_SAMPLE") else None
DISTRACTOR = "Copper harbors and violet engines fill the winter market."

# Canned judgments per (judge model, response under judgment): a clear majority, a three-way
# split, a judge that forgets its score, and full agreement.
CANNED = {
    "Orange.": {"judge-a": 8, "judge-b": 8, "judge-c": 3},
    "Blue.": {"judge-a": 2, "judge-b": 5, "judge-c": 8},
    "Green.": {"judge-a": None, "judge-b": 4, "judge-c": 4},
    "Red.": {"judge-a": 6, "judge-b": 6, "judge-c": 6},
}


def _canned(model, user_text):
    response = user_text.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
    score = CANNED[response][model]
    verdict = f"[Score: {score}]" if score is not None else "I would rate it highly."
    return f"[Analysis]\n{model} read the key passage and judged {response!r}.\n{verdict}"


class _Handler(local_servers.QuietHandler):
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or body["model"] not in ("judge-a", "judge-b", "judge-c"):
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "unknown model"}')
            return
        self.seen.append(body)
        text = _canned(body["model"], body["messages"][-1]["content"])
        reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())


@pytest.fixture(scope="module")
def server():
    url, stop = local_servers.start(_Handler)
    yield url + "/v1"
    stop()


@pytest.fixture(scope="module")
def long_records():
    """Short-to-long output for three responses: the judges' input."""
    tokenizer = build_tokenizer()
    corpus = DistractorCorpus([f"{DISTRACTOR} ({i})" for i in range(200)], tokenizer)
    builder = ShortToLong(corpus, tokenizer, ShortToLongConfig(lengths=(1536,), depths=(0.5,), seed=0))
    record = ShortRecord("door", "What colour is the door?", ("The door is painted bright orange.",),
                         ("Orange.", "Blue.", "Green.", "Red."))
    return builder.build(record)


def _sample():
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_parse_score_reads_the_final_line():
    assert parse_score("[Analysis]\nfine\n[Score: 7]\n") == 7
    assert parse_score("x\n**[Score: 10]**") == 10 and parse_score("x\n**Score: 4**") == 4
    assert parse_score("x\n[Score: 8]\nThe response is accurate.") is None  # score mid-text
    assert parse_score("x\n**Score: 8.2** (average)") is None
    assert parse_score("x\n[Score: 11]") is None and parse_score("") is None


@pytest.mark.skipif(SAMPLE is None or not SAMPLE.is_file(),
                    reason="set LONGRM_ALIGNMENT_SAMPLE to the authors' Stage II sample to run this")
def test_reproduces_the_authors_scores_and_vote_counts():
    for record in _sample():
        judges = [record["chosen_model"], *record["rejected_models"]]
        texts = [record["chosen"], *record["rejected"]]
        vote = majority_vote([Judgment(j, t, parse_score(t)) for j, t in zip(judges, texts)], rejected="others")
        assert vote.judge_scores == record["judge_scores"]
        assert list(vote.vote_counts) == record["vote_counts"]
        assert vote.chosen.judge == record["chosen_model"]
        assert vote.judge_scores[record["chosen_model"]] == max(
            set(vote.judge_scores.values()) - {-1}, key=list(vote.judge_scores.values()).count)


def test_majority_dissent_and_no_majority():
    def votes(*scores, **kw):
        return majority_vote([Judgment(f"j{i}", f"t{i}", s) for i, s in enumerate(scores)], **kw)

    vote = votes(7, 3, 7, None)
    assert vote.chosen.judge == "j0" and [j.judge for j in vote.rejected] == ["j1", "j3"]
    assert vote.vote_counts == (2, 1, 1) and vote.judge_scores == {"j0": 7, "j1": 3, "j2": 7, "j3": -1}
    assert votes(7, 3, 7, 5, 6, rejected="others").rejected[1].judge == "j2"
    assert votes(7, 3).chosen is None  # tie
    assert votes(5, None, None).chosen is None  # one judge alone is no agreement; failures never win
    assert votes(7, 7, 3, 4, 5).chosen is not None and votes(7, 7, 3, 4, 5, majority="strict").chosen is None


@pytest.mark.skipif(SAMPLE is None or not SAMPLE.is_file(),
                    reason="set LONGRM_ALIGNMENT_SAMPLE to the authors' Stage II sample to run this")
def test_short_messages_keep_only_the_tagged_passage():
    record = _sample()[2]  # tag <Q9>, named only in the system prompt
    short = short_messages(record)
    user = short[1]["content"]
    context = user[:user.index("</context>")]
    assert context.startswith("<context>\n<Q9>\n Chapter: THE FIFTH BOOK") and context.endswith("</Q9>\n")
    assert user.split("</context>")[1] == record["messages"][1]["content"].split("</context>")[1]
    assert short[0] == record["messages"][0]
    assert short_messages({"messages": [{"role": "user", "content": "no tags"}]}) is None


def test_openai_judges_over_http(server, long_records):
    _Handler.seen.clear()
    settings = GenerationSettings(seed=5)
    judges = [OpenAIChatJudge(m, m, server, settings, concurrency=2) for m in ("judge-a", "judge-b", "judge-c")]
    voter = ConsistencyVoter(judges)
    out = voter.run(long_records)
    summary = voter.summary.as_dict()
    assert summary["items"] == 4 and summary["written"] == 2 and summary["no_majority"] == 1
    assert summary["unanimous"] == 1 and summary["dropped_ids"] == [
        "door/1536/0/1 (no majority)", "door/1536/0/3 (unanimous)"]
    assert summary["parse_failures"] == 1 and summary["judgments"] == 12 and summary["judged_full_context"] == 0
    orange, green = out
    assert orange["chosen_model"] == "judge-a" and orange["rejected_models"] == ["judge-c"]
    assert orange["chosen"].endswith("[Score: 8]") and orange["judge_scores"] == {
        "judge-a": 8, "judge-b": 8, "judge-c": 3}
    assert orange["vote_counts"] == [2, 1] and orange["prompt_tokens"] == long_records[0]["prompt_tokens"]
    assert green["chosen_model"] == "judge-b" and green["rejected_models"] == ["judge-a"]
    # judges saw the key passage only, with greedy decoding and the seed
    sent = _Handler.seen[0]
    assert DISTRACTOR not in sent["messages"][1]["content"] and "bright orange" in sent["messages"][1]["content"]
    assert sent["temperature"] == 0.0 and sent["seed"] == 5
    with pytest.raises(InputError, match="field 'judge': no-such-model: .* answered HTTP 400"):
        OpenAIChatJudge("no-such-model", "no-such-model", server, settings).generate([long_records[0]["messages"]])


def test_transformers_judges_from_disk_count_cut_judgments(long_records, tmp_path, capsys):
    # random tiny models write gibberish: every judgment is a parse failure, so nothing has a majority
    paths = [save_tiny_model(tmp_path / f"tiny{seed}", hidden=32, layers=1, heads=2, kv_heads=1, seed=seed)
             for seed in (0, 1)]
    src = tmp_path / "long.jsonl"
    src.write_text(json.dumps(long_records[0]) + "\n")
    argv = ["synth", "vote", "--input", str(src), "--max-new-tokens", "4", "--judge", f"hf:{paths[0]}",
            "--judge", f"hf:{paths[1]}"]
    assert main(argv + ["-o", str(tmp_path / "out.jsonl")]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    # 4 new tokens without an end-of-sequence: both judgments were cut at the limit, counted as such
    assert summary["cut_at_length"] == 2 and summary["parse_failures"] == 0
    assert "2 judgments were cut at the token limit" in captured.err
    assert summary["no_majority"] == 1 and summary["written"] == 0
    assert summary["dropped_ids"] == ["door/1536/0/0 (no majority)"]
    assert (tmp_path / "out.jsonl").read_text() == ""


def test_judge_specs():
    assert parse_judge_spec("openai:gpt-4o@http://h:1/v1") == ("gpt-4o", "openai", "gpt-4o", "http://h:1/v1")
    assert parse_judge_spec("q=vllm:/models/Qwen3-8B") == ("q", "vllm", "/models/Qwen3-8B", None)
    assert parse_judge_spec("hf:/models/tiny/")[0] == "tiny"
    for bad in ("gpt-4o", "openai:gpt-4o", "tgi:x"):
        with pytest.raises(InputError, match="judge"):
            parse_judge_spec(bad)


def test_cli_vote_end_to_end(server, long_records, tmp_path, capsys):
    src = tmp_path / "long.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in long_records))
    argv = ["synth", "vote", "--input", str(src), "--batch-size", "2"]
    argv += [arg for m in ("judge-a", "judge-b", "judge-c") for arg in ("--judge", f"openai:{m}@{server}")]
    assert main(argv + ["-o", str(tmp_path / "a.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(argv + ["-o", str(tmp_path / "b.jsonl"), "--rejected", "others"]) == 0
    others = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 2 and summary["no_majority"] == 1 and summary["parse_failures"] == 1
    assert others["written"] == 3 and others["unanimous"] == 0  # the authors' layout keeps unanimous items
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == ["Orange.", "Green."]
    assert len(json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])["rejected"]) == 2
    assert main(argv + ["-o", str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()


def test_cli_vote_bad_input(server, tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n"
                   + json.dumps({"prompt": "no messages"}) + "\n")
    judges = ["--judge", f"openai:judge-a@{server}", "--judge", f"openai:judge-b@{server}"]
    assert main(["synth", "vote", "--input", str(src), "-o", str(tmp_path / "o.jsonl"), *judges]) == 2
    assert f"{src}:2: field 'messages'" in capsys.readouterr().err
    assert main(["synth", "vote", "--input", str(src), "-o", str(tmp_path / "o.jsonl"),
                 "--judge", "tgi:x", "--judge", "hf:y"]) == 2
    assert "field 'judge'" in capsys.readouterr().err
    assert main(["synth", "vote", "--input", str(src), "-o", str(tmp_path / "o.jsonl"), judges[0], judges[1]]) == 2
    assert "at least two judges" in capsys.readouterr().err
