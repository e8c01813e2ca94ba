"""vLLM's OpenAI-compatible server as the API judge, for real: ``vllm serve`` on a tiny model on 127.0.0.1, then
lm-eval's ``local-completions`` (generative, and ``_ll`` through prompt log-probabilities with ``echo``) and
``local-chat-completions`` (generative) end to end, and ``longrm synth`` against the same kind of server.

A recording proxy sits between the clients and the server: it adds ``return_token_ids`` to every request, so
the token ids the server really received come back and are compared with ``longrm render``'s. The server serves
2,048 tokens (``--max-model-len``) and no client is told a context: it is read from the server's
``/v1/models``. lm-eval's text-completion models keep the last ``max_length - 1`` tokens of each request
(2,047 here), so the hf run they are compared with gets ``max_length=2047``; chat messages and
``tokenized_requests=False`` text are not cut by lm-eval, so they get the server's 2,048.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from synth_files import kill_after_records, write_corpus, write_jsonl
from vllm_runs import SAMPLE, group_metrics, lm_eval, max_diff, numbers, prompts

pytestmark = pytest.mark.vllm

SERVED = 2048  # the server's --max-model-len
KEPT = SERVED - 1  # what lm-eval's text-completion models keep of a tokenized request
GEN = ("--gen_kwargs", "max_gen_toks=8")
SHAPE = dict(arch="llama", hidden=64, heads=2, kv_heads=1, layers=1, max_positions=4096)  # head_dim 32 (vLLM CPU)
SCRIPTED_VERDICT = "Score: 7"


class RecordingProxy:
    """Forwards every request to ``upstream``; asks the server for the prompt's token ids and keeps each exchange."""

    def __init__(self, upstream: str):
        self.exchanges: list[tuple[str, dict, int, dict]] = []  # (path, request body, status, response body)
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, data: bytes | None):
                request = urllib.request.Request(upstream + self.path, data=data, method=self.command,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=600) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as err:
                    status, payload = err.code, err.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return status, payload

            def do_GET(self):  # noqa: N802
                self._forward(None)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = self._forward(json.dumps({**body, "return_token_ids": True}).encode())
                with lock:
                    proxy.exchanges.append((self.path, body, status, json.loads(payload)))

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def take(self) -> list[tuple[str, dict, int, dict]]:
        """The exchanges since the last call."""
        taken, self.exchanges = self.exchanges, []
        return taken

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(model: Path, log: Path):
    """``vllm serve MODEL`` in its own process group; (process, base URL) once /health answers."""
    port = _free_port()
    vllm = Path(sys.executable).with_name("vllm")
    command = [str(vllm)] if vllm.exists() else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    sink = log.open("w")
    proc = subprocess.Popen(command + ["serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                                       "--max-model-len", str(SERVED), "--dtype", "float32", "--served-model-name",
                                       "judge", "--enforce-eager", "--seed", "0"],
                            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    _stop(proc)
    raise AssertionError(f"vllm serve not healthy after 600 s:\n{log.read_text()[-4000:]}")


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny random causal LM behind ``vllm serve`` and a recording proxy: (model path, proxy)."""
    from longrm_tasks.testing import save_tiny_model

    root = tmp_path_factory.mktemp("vllm-server")
    model = save_tiny_model(root / "judge", "causal", **SHAPE)
    proc, url = _serve(model, root / "serve.log")
    proxy = RecordingProxy(url)
    yield model, proxy
    proxy.close()
    _stop(proc)


def _completions(proxy, model, **extra) -> str:
    args = dict(model="judge", base_url=f"{proxy.url}/v1/completions", tokenizer=str(model),
                tokenizer_backend="huggingface", num_concurrent=4, max_retries=1, **extra)
    return ",".join(f"{k}={v}" for k, v in args.items())


def _rendered_ids(model: Path, tmp_path: Path, context: int) -> tuple[list[tuple[int, ...]], int]:
    """``longrm render``'s prompts (the command users run) as token ids: (in-context prompts, over-context count)."""
    from transformers import AutoTokenizer

    out = tmp_path / f"render-{context}.jsonl"
    subprocess.run([sys.executable, "-m", "longrm_tasks.cli", "render", "--data", "sample", "--tokenizer", str(model),
                    "--max-length", str(context), "--out", str(out)], check=True, capture_output=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model)
    fitting = [tuple(tok.encode(r["prompt"], add_special_tokens=False)) for r in rows if not r["overlong"]]
    return fitting, sum(r["overlong"] for r in rows)


def _received_ids(exchanges, path: str) -> list[tuple[int, ...]]:
    """The prompt token ids the server reported for every answered request to ``path``."""
    ids = []
    for where, _, status, reply in exchanges:
        if where != path:
            continue
        assert status == 200, reply  # nothing was refused: over-context items never reach the server whole
        if "prompt_token_ids" in reply and reply["prompt_token_ids"] is not None:  # chat: one prompt per reply
            ids.append(tuple(reply["prompt_token_ids"]))
        else:
            ids += [tuple(choice["prompt_token_ids"]) for choice in reply["choices"]]
    return ids


def _assert_server_got_render(received, rendered, n_requests: int, n_over: int) -> None:
    """Every in-context prompt reached the server as ``longrm render``'s ids; the rest are 1-token placeholders."""
    assert len(received) == n_requests
    missing = Counter(rendered) - Counter(received)
    assert not missing, f"{sum(missing.values())} rendered prompts never reached the server as rendered"
    extra = Counter(received) - Counter(rendered)
    assert sum(extra.values()) == n_over and all(len(ids) < 64 for ids in extra), "unexpected prompts"


def _greedy_agreement(a: dict, b: dict) -> float:
    """Share of the in-context documents whose greedy outputs are identical (over-context ones must match as a set)."""
    over = {name: {d for d, row in rows.items() if row["doc"]["overlong"]} for name, rows in (("a", a), ("b", b))}
    assert over["a"] == over["b"]
    scored = [d for d in a if d not in over["a"]]
    return sum(a[d]["resps"][0][0] == b[d]["resps"][0][0] for d in scored) / len(scored)


def _same_counts(api: dict, hf: dict, group: str, overlong: int) -> None:
    for count in ("extra/overlong", "extra/truncated", "extra/skipped", "extra/short_budget"):
        assert group_metrics(api, group)[f"{count},none"] == group_metrics(hf, group)[f"{count},none"], (group, count)
    assert group_metrics(api, group)["extra/overlong,none"] == overlong
    assert group_metrics(api, group)["AVG,none"] == group_metrics(hf, group)["AVG,none"]


def test_completions_judge_reads_the_servers_context_and_matches_hf(served, tmp_path):
    model, proxy = served
    proxy.take()
    tasks = "long_rewardbench,long_rewardbench_ll"
    api, api_samples, api_err = lm_eval(tmp_path, "local-completions", _completions(proxy, model), tasks, SAMPLE, *GEN)
    exchanges = proxy.take()
    hf, hf_samples, _ = lm_eval(tmp_path, "hf", f"pretrained={model},dtype=float32,max_length={KEPT}", tasks, SAMPLE,
                                *GEN)
    # the context: read from the server, less the token lm-eval holds back; one line says so
    source = f"server {proxy.url}/v1/models max_model_len minus the 1 token lm-eval's API models hold back"
    assert f"max_length {KEPT:,} from {source}" in api_err
    assert api["configs"]["long_rewardbench_all"]["metadata"]["longrm"]["max_length"] == KEPT
    assert "truncat" not in api_err.replace("extra/truncated", "")  # lm-eval cut nothing (its warnings say so)
    for task in ("long_rewardbench_all", "long_rewardbench_ll_all"):
        assert len(api_samples[task]) == len(hf_samples[task]) == 58
        assert prompts(api_samples[task]) == prompts(hf_samples[task]), task
    # over-context items are counted and scored wrong (paper) without stopping the run, as on hf
    rendered, over = _rendered_ids(model, tmp_path, KEPT)
    _same_counts(api, hf, "long_rewardbench", over)
    _same_counts(api, hf, "long_rewardbench_ll", over + 1)  # one more leaves no room for the verdict token
    generated = [x for x in exchanges if x[0] == "/v1/completions" and not x[1].get("echo")]
    _assert_server_got_render(_received_ids(generated, "/v1/completions"), rendered, 58, over)
    scored = [x for x in exchanges if x[1].get("echo")]  # the ll judge: prompt log-probabilities through echo
    assert scored and all(len(ids) <= KEPT for ids in _received_ids(scored, "/v1/completions"))
    same = _greedy_agreement(api_samples["long_rewardbench_all"], hf_samples["long_rewardbench_all"])
    print(f"greedy outputs identical (local-completions vs hf): {same:.1%}")
    assert same >= 0.9
    worst = max_diff(numbers(api_samples["long_rewardbench_ll_all"]), numbers(hf_samples["long_rewardbench_ll_all"]))
    print(f"log-likelihood max |server echo - hf|: {worst:.2e}")
    assert worst < 2e-3


def test_text_and_chat_requests_reach_the_server_as_rendered_with_thinking_off(served, tmp_path):
    model, proxy = served
    proxy.take()
    text, text_samples, text_err = lm_eval(tmp_path, "local-completions",
                                           _completions(proxy, model, tokenized_requests=False), "long_rewardbench",
                                           SAMPLE, *GEN)
    text_exchanges = proxy.take()
    chat_args = f"model=judge,base_url={proxy.url}/v1/chat/completions,num_concurrent=4,max_retries=1"
    chat, chat_samples, chat_err = lm_eval(tmp_path, "local-chat-completions", chat_args, "long_rewardbench",
                                           json.dumps({"data_dir": "sample", "tokenizer": str(model)}), *GEN,
                                           "--apply_chat_template")
    chat_exchanges = proxy.take()
    hf, hf_samples, _ = lm_eval(tmp_path, "hf", f"pretrained={model},dtype=float32,max_length={SERVED}",
                                "long_rewardbench", SAMPLE, *GEN)
    # text is not cut by lm-eval: the server's whole context counts
    for err in (text_err, chat_err):
        assert f"max_length {SERVED:,} from server {proxy.url}/v1/models max_model_len;" in err
    rendered, over = _rendered_ids(model, tmp_path, SERVED)
    for results in (text, chat):
        _same_counts(results, hf, "long_rewardbench", over)
    _assert_server_got_render(_received_ids(text_exchanges, "/v1/completions"), rendered, 58, over)
    _assert_server_got_render(_received_ids(chat_exchanges, "/v1/chat/completions"), rendered, 58, over)
    # thinking off in every chat request (answered or placeholder); the server renders the template with it
    bodies = [body for _, body, _, _ in chat_exchanges]
    assert len(bodies) == 58 and all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
    for name, samples in (("text completions", text_samples), ("chat completions", chat_samples)):
        same = _greedy_agreement(samples["long_rewardbench_all"], hf_samples["long_rewardbench_all"])
        print(f"greedy outputs identical ({name} vs hf): {same:.1%}")
        assert same >= 0.9


def test_fit_protocol_cuts_prompts_to_what_the_server_takes(served, tmp_path):
    model, proxy = served
    proxy.take()
    fit = json.dumps({"data_dir": "sample", "protocol": "fit", "max_gen_toks": 8})
    results, samples, _ = lm_eval(tmp_path, "local-completions", _completions(proxy, model), "long_rewardbench",
                                  fit, *GEN)
    metrics = group_metrics(results, "long_rewardbench")
    assert metrics["extra/overlong,none"] == 0 and metrics["extra/truncated,none"] > 0
    received = _received_ids(proxy.take(), "/v1/completions")  # all answered: the server refused none
    assert len(received) == len(samples["long_rewardbench_all"]) == 58
    assert max(map(len, received)) <= KEPT - 8


def _save_scripted_judge(path: Path) -> Path:
    """A tiny causal LM whose greedy answer to any chat prompt is ``SCRIPTED_VERDICT``: attention and MLP add
    nothing, so each next token depends on the current one alone, and those transitions are written into the
    embeddings and the output layer (the judge's answers then parse, so voting has records to write)."""
    import torch

    from longrm_tasks.testing import build_model

    model, tok = build_model("causal", **SHAPE)
    model.config.tie_word_embeddings = False
    last = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                   enable_thinking=False, tokenize=False)
    chain = [tok.encode(last, add_special_tokens=False)[-1], *tok.encode(SCRIPTED_VERDICT, add_special_tokens=False),
             tok.convert_tokens_to_ids("<|im_end|>")]
    assert len(set(chain[:-1])) == len(chain) - 1, chain  # each step must have one successor
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.copy_(torch.randn_like(head) * 0.02)
        for step, (token, after) in enumerate(zip(chain, chain[1:])):
            embed[token] = 0.0
            embed[token, step] = 1.0
            head[after, step] = 30.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_synth_generates_and_votes_against_the_server_and_resumes_to_the_same_bytes(tmp_path):
    model = _save_scripted_judge(tmp_path / "scripted")
    write_corpus(tmp_path / "corpus.jsonl", 300)
    write_jsonl(tmp_path / "short.jsonl", (
        {"id": f"s{i}", "question": f"Which fact has number {i}?", "key_passages": [f"Fact {i}: the harbor is blue."],
         "responses": [f"Fact {i} says blue.", f"Fact {i} says red."]} for i in range(4)))
    cli = [sys.executable, "-m", "longrm_tasks.cli", "synth"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # generate: long records around each key passage, some beyond the server's context
    records = tmp_path / "long.jsonl"
    subprocess.run(cli + ["short-to-long", "--records", str(tmp_path / "short.jsonl"), "--corpus",
                          str(tmp_path / "corpus.jsonl"), "--tokenizer", str(model), "--lengths", "1500,3000",
                          "--depths", "0.5", "-o", str(records)], check=True, capture_output=True, env=env)
    proc, url = _serve(model, tmp_path / "serve.log")
    try:
        vote = cli + ["vote", "--input", str(records), "--judge-context", "full", "--max-new-tokens", "16",
                      "--batch-size", "1", "--concurrency", "2", "--rejected", "others"]
        for name in ("a", "b"):
            vote += ["--judge", f"{name}=openai:judge@{url}/v1"]
        clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
        done = subprocess.run(vote + ["-o", str(clean)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        # the 3,000-token records are over the server's context: counted, not fatal; the rest are unanimous 7s
        assert summary["items"] == 16 and summary["too_long"] == 8 and summary["written"] == 8, summary
        assert summary["parse_failures"] == 0 and summary["cut_at_length"] == 0, summary
        assert all(json.loads(line)["judge_scores"] == {"a": 7, "b": 7} for line in clean.read_text().splitlines())
        # interrupted (SIGKILL after a few records), then resumed: the same bytes as the uninterrupted run
        kill_after_records(vote + ["-o", str(out)], out, records=3, timeout=300, poll=0.01, env=env)
        resumed = subprocess.run(vote + ["-o", str(out), "--resume"], capture_output=True, text=True, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads(resumed.stdout.strip().splitlines()[-1])["resumed_from"] >= 3
        assert out.read_bytes() == clean.read_bytes()
    finally:
        _stop(proc)
