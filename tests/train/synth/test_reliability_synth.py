"""`longrm synth` against an unreliable OpenAI-compatible server: retries with backoff on dropped
connections, resets and timeouts, one clear line when retries run out, judgments cut at the token
limit and prompts beyond a judge's context counted (not fatal), output written as it goes, --resume."""
import json
import socket
import struct
import threading
import time
from collections import Counter

import pytest

import local_servers  # tests/helpers/: a scripted server in a thread
import project  # tests/helpers/project.py: the repository's files
from synth_files import kill_after_records, write_corpus, write_jsonl

from longrm_tasks.cli import main
from longrm_tasks.errors import InputError
from longrm_tasks.train.synth.judges import GenerationSettings, OpenAIChatJudge, RetryPolicy
from longrm_tasks.train.synth.progress import progress_path

FAST = RetryPolicy(timeout=0.5, retries=2, backoff=0.01)
RETRY_ARGS = ["--timeout", "0.5", "--retries", "2", "--retry-wait", "0.01"]
SCORES = {"Orange.": 8, "Blue.": 3, "Green.": 6, "Red.": 5, "Grey.": 7, "Black.": 2}
SMALL_CONTEXT_CHARS = 400  # the "small" judge refuses prompts longer than this, as a server over its context


def _response(body):
    text = body["messages"][-1]["content"]
    return text.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


class _Server(local_servers.QuietHandler):
    """Judges by model name: ``ok``; ``flaky`` drops the connection on each prompt's first request;
    ``reset`` resets it (RST); ``busy`` answers 429 + Retry-After first; ``slow`` answers each prompt's
    first request after the client's timeout;
    ``cut`` stops at the token limit on Blue.; ``small`` has a small context; ``dead`` never answers;
    ``dies`` answers until ``alive`` is cleared."""

    requests: Counter = Counter()
    alive = threading.Event()

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, response = body["model"], _response(body)
        key = (model, response)
        self.requests[key] += 1
        first = self.requests[key] == 1
        if model == "dead" or (model == "flaky" and first) or (model == "dies" and not self.alive.is_set()):
            self.close_connection = True  # no response at all: the client sees RemoteDisconnected
            return
        if model == "reset" and first:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if model == "busy" and first:  # rate limited: 429 with Retry-After
            data = b'{"error": {"message": "Rate limit reached", "type": "rate_limit"}}'
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if model == "slow" and first:
            time.sleep(FAST.timeout + 0.4)
        if model == "small" and len(body["messages"][-1]["content"]) > SMALL_CONTEXT_CHARS:
            self._reply(400, {"object": "error", "type": "BadRequestError", "code": 400, "message":
                              "This model's maximum context length is 128 tokens. However, you requested "
                              "1190 tokens (166 in the messages, 1024 in the completion)."})
            return
        text = f"[Analysis]\n{model} judged {response}\n[Score: {SCORES[response]}]"
        finish = "stop"
        if model == "cut" and response == "Blue.":
            text, finish = "[Analysis]\nThe response names a colour, but the passage says", "length"
        self._reply(200, {"choices": [{"index": 0, "finish_reason": finish,
                                       "message": {"role": "assistant", "content": text}}]})


@pytest.fixture(scope="module")
def server():
    url, stop = local_servers.start(_Server)
    yield url + "/v1"
    stop()


@pytest.fixture(autouse=True)
def _fresh_server_state():
    _Server.requests.clear()
    _Server.alive.set()


def _record(i, response, padding=0):
    user = f"<prompt>\nWhat colour is the door?\n</prompt>\n{'x' * padding}\n<response>\n{response}\n</response>\n"
    return {"id": f"r{i}", "messages": [{"role": "system", "content": "Judge it."},
                                        {"role": "user", "content": user}]}


def _conversation(response):
    return _record(0, response)["messages"]


CLIENTS = ["urllib", pytest.param("openai", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("openai") is None, reason="the openai client is not installed"))]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("model", ["flaky", "reset", "slow", "busy"])
def test_transient_failures_are_retried(server, model, client):
    judge = OpenAIChatJudge(model, model, server, GenerationSettings(), retry=FAST, client=client)
    out = judge.generate([_conversation("Orange."), _conversation("Blue.")])
    assert [g.text.splitlines()[-1] for g in out] == ["[Score: 8]", "[Score: 3]"]
    assert [g.finish_reason for g in out] == ["stop", "stop"]
    assert _Server.requests[(model, "Orange.")] == 2 and _Server.requests[(model, "Blue.")] == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_exhausted_retries_end_in_one_line(server, client):
    judge = OpenAIChatJudge("dead", "dead", server, GenerationSettings(), retry=FAST, client=client)
    with pytest.raises(InputError) as info:
        judge.generate([_conversation("Orange.")])
    message = str(info.value)
    assert "\n" not in message and info.value.field == "judge"
    assert "dead: no answer from" in message and "after 3 attempt(s)" in message and "--retries" in message
    assert _Server.requests[("dead", "Orange.")] == 3  # bounded: 1 + 2 retries


@pytest.mark.parametrize("client", CLIENTS)
def test_cut_judgments_and_context_errors_are_reported_not_raised(server, client):
    cut = OpenAIChatJudge("cut", "cut", server, GenerationSettings(), retry=FAST, client=client)
    orange, blue = cut.generate([_conversation("Orange."), _conversation("Blue.")])
    assert not orange.cut and blue.cut and blue.finish_reason == "length"
    small = OpenAIChatJudge("small", "small", server, GenerationSettings(), retry=FAST, client=client)
    short, long = small.generate([_conversation("Orange."), _record(1, "Blue.", padding=1000)["messages"]])
    assert not short.too_long and long.too_long and long.text == ""
    assert _Server.requests[("small", "Blue.")] == 1  # a context error is not retried


def _vote_args(server, src, out, *judges, batch=2):
    # Every judge here agrees, so keep unanimous items as the authors' layout does ("others").
    argv = ["synth", "vote", "--input", str(src), "-o", str(out), "--judge-context", "full", "--rejected", "others",
            "--batch-size", str(batch), *RETRY_ARGS]
    for model in judges:
        argv += ["--judge", f"openai:{model}@{server}"]
    return argv


def _write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_vote_counts_cut_judgments_and_skips_records_beyond_a_judge_context(server, tmp_path, capsys):
    records = [_record(0, "Orange."), _record(1, "Blue."), _record(2, "Green.", padding=1000), _record(3, "Red.")]
    src = _write_records(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    assert main(_vote_args(server, src, out, "ok", "flaky", "cut", "small")) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["items"] == 4 and summary["too_long"] == 1 and summary["cut_at_length"] == 1
    assert summary["parse_failures"] == 0 and summary["judgments"] == 12 and summary["written"] == 3
    assert "r2 (longer than the context of small)" in summary["dropped_ids"]
    assert "1 judgments were cut at the token limit" in captured.err
    assert "1 records were longer than a judge's context" in captured.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r3"]
    assert rows[1]["judge_scores"]["cut"] == -1  # the cut judgment votes as a failure
    assert not progress_path(out).exists()  # finished: no progress file left


def test_vote_survives_a_dying_server_and_resumes_to_the_same_bytes(server, tmp_path, capsys, monkeypatch):
    records = [_record(i, r) for i, r in enumerate(["Orange.", "Blue.", "Green.", "Red.", "Grey.", "Black."])]
    src = _write_records(tmp_path / "in.jsonl", records)
    clean = tmp_path / "clean.jsonl"
    assert main(_vote_args(server, src, clean, "ok", "flaky", "dies")) == 0
    capsys.readouterr()

    out = tmp_path / "out.jsonl"
    original = OpenAIChatJudge._post
    calls = Counter()

    def dies_after_four(self, messages):  # the "dies" server goes away after its fourth answer
        if self.name == "dies":
            calls["dies"] += 1
            if calls["dies"] > 4:
                _Server.alive.clear()
        return original(self, messages)

    monkeypatch.setattr(OpenAIChatJudge, "_post", dies_after_four)
    code = main(_vote_args(server, src, out, "ok", "flaky", "dies"))
    monkeypatch.setattr(OpenAIChatJudge, "_post", original)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    err = err.strip().splitlines()[-1]  # after the progress bar: one line
    assert "dies: no answer from" in err and "4 of 6 input records done" in err and "--resume" in err
    assert progress_path(out).exists()
    done = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert done == [json.loads(line)["id"] for line in clean.read_text().splitlines()][:len(done)]

    # Starting again without --resume would throw that work away: refused.
    assert main(_vote_args(server, src, out, "ok", "flaky", "dies")) == 2
    assert "unfinished" in capsys.readouterr().err
    # Different options: refused, naming the option.
    assert main(_vote_args(server, src, out, "ok", "flaky", "dies") + ["--resume", "--seed", "3"]) == 2
    assert "seed was 0, now 3" in capsys.readouterr().err

    _Server.alive.set()
    with out.open("ab") as handle:  # a kill mid-line leaves half a record behind
        handle.write(b'{"id": "half a rec')
    assert main(_vote_args(server, src, out, "ok", "flaky", "dies") + ["--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["resumed_from"] == 4 and summary["items"] == 6
    assert out.read_bytes() == clean.read_bytes()
    assert not progress_path(out).exists()
    assert main(_vote_args(server, src, out, "ok", "flaky", "dies") + ["--resume"]) == 2  # nothing left
    assert "nothing to resume" in capsys.readouterr().err


def test_vote_interrupted_keeps_progress_and_says_how_to_resume(server, tmp_path, capsys, monkeypatch):
    from longrm_tasks.train.synth import voting

    records = [_record(i, r) for i, r in enumerate(["Orange.", "Blue.", "Green."])]
    src = _write_records(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    original = voting.ConsistencyVoter.run
    batches = Counter()

    def ctrl_c_on_second_batch(self, batch, **kwargs):
        batches["n"] += 1
        if batches["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch, **kwargs)

    monkeypatch.setattr(voting.ConsistencyVoter, "run", ctrl_c_on_second_batch)
    assert main(_vote_args(server, src, out, "ok", "flaky", batch=1)) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"longrm synth: interrupted: 1 of 3 input records done, output so far in {out}; "
                   "continue with --resume")
    monkeypatch.setattr(voting.ConsistencyVoter, "run", original)
    assert main(_vote_args(server, src, out, "ok", "flaky", batch=1) + ["--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["items"] == 3 and summary["written"] == 3 and summary["resumed_from"] == 1


def test_short_to_long_resumes_to_the_same_bytes(tmp_path, capsys, monkeypatch):
    from longrm_tasks.testing import build_tokenizer
    from longrm_tasks.train.synth import short_to_long

    build_tokenizer().save_pretrained(tmp_path / "tok")
    write_corpus(tmp_path / "corpus.jsonl", 200, words=20, stride=1)
    write_jsonl(tmp_path / "short.jsonl", ({"id": f"s{i}", "question": f"Question {i}?",
                                            "key_passage": f"Fact number {i}.", "responses": ["Yes.", "No."]}
                                           for i in range(4)))
    argv = ["synth", "short-to-long", "--records", str(tmp_path / "short.jsonl"), "--corpus",
            str(tmp_path / "corpus.jsonl"), "--tokenizer", str(tmp_path / "tok"), "--lengths", "900,1200"]
    clean = tmp_path / "clean.jsonl"
    assert main(argv + ["-o", str(clean)]) == 0
    capsys.readouterr()

    out = tmp_path / "out.jsonl"
    original = short_to_long.ShortToLong.build
    calls = Counter()

    def killed_on_third_record(self, record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, record)

    monkeypatch.setattr(short_to_long.ShortToLong, "build", killed_on_third_record)
    assert main(argv + ["-o", str(out)]) == 130
    assert "2 of 4 input records done" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2 * 2 * 2  # two records x two lengths x two responses
    assert out.read_text().splitlines() == clean.read_text().splitlines()[:8]
    monkeypatch.setattr(short_to_long.ShortToLong, "build", original)
    with out.open("ab") as handle:
        handle.write(b'{"id": "s2/900/0/0", "messages": [{"role"')  # a kill mid-line
    assert main(argv + ["-o", str(out), "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["records"] == 4 and summary["written"] == 16 and summary["resumed_from"] == 2
    assert out.read_bytes() == clean.read_bytes()


def test_synth_help_explains_every_option():
    import argparse

    from longrm_tasks.train.synth import cli as synth_cli

    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"longrm synth {name} {action.option_strings[0]} has no help text"


def test_transformers_judge_skips_a_record_beyond_its_context(tmp_path, capsys):
    from longrm_tasks.testing import save_tiny_model

    paths = [save_tiny_model(tmp_path / f"tiny{seed}", hidden=32, layers=1, heads=2, kv_heads=1, seed=seed,
                             max_positions=256) for seed in (0, 1)]
    src = _write_records(tmp_path / "in.jsonl", [_record(0, "Orange.", padding=3000), _record(1, "Blue.")])
    argv = ["synth", "vote", "--input", str(src), "-o", str(tmp_path / "out.jsonl"), "--judge-context", "full",
            "--max-new-tokens", "2", "--judge", f"a=hf:{paths[0]}", "--judge", f"b=hf:{paths[1]}"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["items"] == 2 and summary["too_long"] == 1 and summary["judgments"] == 2
    assert summary["dropped_ids"][0] == "r0 (longer than the context of a, b)"


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(server, tmp_path, capsys):
    import fcntl

    src = _write_records(tmp_path / "in.jsonl", [_record(0, "Orange.")])
    out = tmp_path / "out.jsonl"
    out.write_text("records of the run in progress\n")
    with open(out, "rb") as held:  # the first run holds its output
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert main(_vote_args(server, src, out, "ok", "flaky")) == 2
    assert "another `longrm synth` run is writing this output" in capsys.readouterr().err
    assert out.read_text() == "records of the run in progress\n"  # not truncated by the refused run
    assert main(_vote_args(server, src, out, "ok", "flaky")) == 0  # once released, a new run proceeds


def test_records_without_id_are_named_by_position(server, tmp_path, capsys):
    records = [{k: v for k, v in _record(i, r).items() if k != "id"} for i, r in enumerate(["Orange.", "Blue."])]
    records[1]["messages"][1]["content"] += "x" * 1000
    src = _write_records(tmp_path / "in.jsonl", records)
    assert main(_vote_args(server, src, tmp_path / "out.jsonl", "ok", "small", batch=1)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dropped_ids"] == ["record 2 (longer than the context of small)"]


def test_short_to_long_sigkilled_mid_run_resumes_to_the_same_bytes(tmp_path):
    import os
    import subprocess
    import sys

    from longrm_tasks.testing import build_tokenizer

    build_tokenizer().save_pretrained(tmp_path / "tok")
    write_corpus(tmp_path / "corpus.jsonl", 300)
    write_jsonl(tmp_path / "short.jsonl", ({"id": f"s{i}", "question": f"Question {i}?",
                                            "key_passage": f"Fact number {i}."} for i in range(20)))
    argv = [sys.executable, "-m", "longrm_tasks.cli", "synth", "short-to-long", "--records",
            str(tmp_path / "short.jsonl"), "--corpus", str(tmp_path / "corpus.jsonl"), "--tokenizer",
            str(tmp_path / "tok"), "--lengths", "1000", "--depths", "0.25,0.75"]
    env = dict(os.environ, PYTHONPATH=str(project.ROOT), OMP_NUM_THREADS="1")
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    subprocess.run(argv + ["-o", str(clean)], env=env, check=True, capture_output=True)

    done = kill_after_records(argv + ["-o", str(out)], out, records=3, timeout=120, env=env)
    assert 3 <= done < 20
    proc = subprocess.run(argv + ["-o", str(out), "--resume"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["resumed_from"] >= done
    assert out.read_bytes() == clean.read_bytes()


def test_synth_refuses_to_write_over_its_own_input(server, tmp_path, capsys):
    src = _write_records(tmp_path / "in.jsonl", [_record(0, "Orange.")])
    before = src.read_bytes()
    assert main(_vote_args(server, src, src, "ok", "flaky")) == 2
    assert "is also an input" in capsys.readouterr().err and src.read_bytes() == before
