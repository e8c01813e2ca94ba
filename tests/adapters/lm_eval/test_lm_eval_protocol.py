"""The protocol inside lm-eval: the model's real context, over-long items, the generation budget, thinking,
API servers, BOS, option typos, and what every result records about how it was made."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest.importorskip("lm_eval")

from longrm_tasks.adapters.lm_eval import metrics as lm_eval_metrics  # noqa: E402
from longrm_tasks.adapters.lm_eval.api_context import server_context  # noqa: E402
from longrm_tasks.adapters.lm_eval.options import parse_options  # noqa: E402
from longrm_tasks.adapters.lm_eval.tasks import load_dataset, process_results  # noqa: E402
from longrm_tasks.data import load_benchmark, select  # noqa: E402
from longrm_tasks.errors import InputError  # noqa: E402
from longrm_tasks.metrics.benchmark import compute_metrics  # noqa: E402
from longrm_tasks.prompts.orders import OrderScheme  # noqa: E402
from longrm_tasks.context.fitting import MARGIN  # noqa: E402
from longrm_tasks.requests.presentation import judged  # noqa: E402
from longrm_tasks.prompts.judge_prompts import judge_messages, render_chat  # noqa: E402
from longrm_tasks.testing import build_tokenizer, save_tiny_model  # noqa: E402

from project import TASK_DIR, task_manager as _manager  # noqa: E402

LOGGER = "longrm_tasks.adapters.lm_eval.tasks"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "causal", arch="qwen3", hidden=32, layers=1,
                           max_positions=4096)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _tokens(tokenizer, item, order) -> int:
    """Independent count: the judge prompt rendered by the chat template, tokenized whole."""
    return len(tokenizer(render_chat(tokenizer, judge_messages(item, order)), add_special_tokens=False)["input_ids"])


def _log_line(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if r.name == LOGGER and "max_length" in r.getMessage())


@pytest.mark.parametrize("model_args, expected", [
    ({"max_model_len": 131072}, "max_length 131,072 from vLLM max_model_len argument"),
    ({"max_length": 1500}, "max_length 1,500 from max_length argument"),
    ({}, "max_length 4,096 from "),
])
def test_the_models_real_context_reaches_the_fitting_and_the_log(tiny_model, caplog, model_args, expected):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ds = load_dataset(data_dir="sample", longrm_judge="generative", longrm_configs="Math",
                      pretrained=str(tiny_model), **model_args)
    line = _log_line(caplog)
    assert expected in line and "protocol paper" in line
    value = int(expected.split()[1].replace(",", ""))
    assert set(ds["test"]["max_length"]) == {value}
    # a vLLM context above the model config's (4,096) is what the model serves: nothing over-long at 131,072
    assert any(ds["test"]["overlong"]) == (value < 1808)


def test_over_long_items_are_wrong_under_paper_and_skipped_under_fit_skip(tiny_model, tokenizer):
    import lm_eval

    items = select(load_benchmark("sample").items, configs=["LongQA"], tasktypes=["PairWise"])
    scheme = OrderScheme.parse("paper")
    counts = [_tokens(tokenizer, it, o) for it in items for o in scheme.orders_for(it)]
    max_length, gen = 1700, 64
    assert 0 < sum(n >= max_length for n in counts) < len(counts)  # some fit, some do not

    def run(metadata):
        meta = {"pretrained": str(tiny_model), "data_dir": "sample", "max_length": max_length, **metadata}
        return lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model), "max_length": max_length},
                                       tasks=["long_rewardbench_pairwise_longqa"], task_manager=_manager(meta),
                                       device="cpu", log_samples=True, gen_kwargs=f"max_gen_toks={gen}")

    task = "long_rewardbench_pairwise_longqa"
    paper = run({})
    values = paper["results"][task]
    assert values["extra/overlong,none"] == sum(n >= max_length for n in counts)
    assert values["extra/skipped,none"] == 0
    assert values["extra/short_budget,none"] == sum(max_length - gen < n < max_length for n in counts)
    for sample in paper["samples"][task]:
        doc, rec = sample["doc"], sample["AVG"]
        if doc["overlong"]:  # scored wrong without asking the model for a real answer
            assert rec["predicted"] is None and rec["overlong"] and sample["arguments"][0][1]["max_gen_toks"] == 1
        else:  # lm-eval never cuts: generation shrinks to the room left
            assert sample["arguments"][0][1]["max_gen_toks"] == min(gen, max_length - doc["prompt_tokens"])
    rows = [judged(s["AVG"]) for s in paper["samples"][task]]
    assert values["PairWise Avg,none"] == pytest.approx(sum(r.score for r in rows) / len(rows))  # in the denominator

    meta = paper["configs"][task]["metadata"]["longrm"]
    assert meta["protocol"] == "paper" and meta["overlong"] == "wrong" and meta["order"] == "paper"
    assert meta["max_length"] == max_length and meta["max_length_source"] == "max_length argument"
    assert meta["gen_tokens"] == gen and meta["parser"] == "reference" and "data" in meta
    if meta["data"] is not None:  # the loaded benchmark's provenance (data/provenance.py)
        assert meta["data"]["source"] == "sample" and meta["data"]["files"]

    fit = run({"protocol": "fit", "overlong": "skip", "max_gen_toks": gen})
    budget = max_length - gen - MARGIN
    assert fit["results"][task]["extra/skipped,none"] == sum(n > budget for n in counts)
    assert fit["results"][task]["extra/overlong,none"] == 0
    assert fit["configs"][task]["metadata"]["longrm"]["protocol"] == "fit"
    assert all(s["doc"]["protocol"] == "fit" for s in fit["samples"][task])


def test_unknown_metadata_key_names_the_closest_and_model_args_pass(capsys):
    with pytest.raises(InputError, match="did you mean 'data_dir'"):
        parse_options({"data_dri": "sample"})
    with pytest.raises(InputError, match="did you mean 'protocol'"):
        parse_options({"protocl": "fit"})
    # backend arguments lm-eval merges into the same keyword bag are not ours, and not errors
    parse_options({"data_dir": "sample", "max_model_len": 4096, "gpu_memory_utilization": 0.9, "dtype": "float32",
                   "revision": "main", "trust_remote_code": True, "batch_size": 2, "tokenized_requests": False,
                   "base_url": "http://x/v1/completions", "num_concurrent": 2, "version": 1.0})
    with pytest.raises(InputError):
        load_dataset(data_dri="sample", longrm_judge="generative")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["Long-RewardBench: field '--metadata': unknown key 'data_dri'; did you mean 'data_dir'? known keys: "
                   "data_dir, data_revision, max_gen_toks, max_length, order, overlong, parser, protocol, tokenizer"]
    with pytest.raises(InputError, match="protocol=fit"):
        parse_options({"overlong": "skip"})  # paper scores over-long items wrong; skipping is fit's option


def test_thinking_outputs_are_counted():
    doc = {"config": "Math", "id": "x", "tasktype": "PairWise", "subtype": "same", "length": "4k", "order": [1, 0],
           "truncated_tokens": 0, "skipped": False, "overlong": False, "judge": "generative", "kind": "pair", "n": 2,
           "parser": "reference", "prompt_tokens": 10, "max_length": 100}
    rec = process_results(doc, ["<think>A looks fine [[A]]</think>\nFinal: [[B]]"], gen_tokens=50)["AVG"]
    assert rec["thinking"] and rec["predicted"] == [0, 1]  # the reference parser reads [[A]] first, inside the block
    plain = process_results(doc, ["[[B]]"], gen_tokens=50)["AVG"]
    short = process_results(doc, ["[[B]]"], gen_tokens=95)["AVG"]
    assert not plain["thinking"] and not plain["short_budget"] and short["short_budget"]
    extra = compute_metrics([judged(r) for r in (rec, plain, short)])["extra"]
    assert extra["thinking_outputs"] == 1 and extra["short_budget"] == 1


def test_chat_api_requests_carry_thinking_off():
    from lm_eval.models.api_models import JsonChatStr

    tm = _manager({"data_dir": "sample", "max_length": 4096})
    task = tm.load(["long_rewardbench_pairwise_math"])["tasks"]["long_rewardbench_pairwise_math"]
    doc = task.test_docs()[0]
    chat = task.construct_requests(doc, JsonChatStr(json.dumps([{"role": "user", "content": "hi"}])),
                                   metadata=("t", 0, 1))
    assert chat.arguments[1]["chat_template_kwargs"] == {"enable_thinking": False}
    text = task.construct_requests(doc, "a rendered prompt", metadata=("t", 0, 1))
    assert "chat_template_kwargs" not in text.arguments[1]  # hf's generate() would reject the argument


def test_aggregations_share_one_metric_computation(monkeypatch):
    calls = []
    monkeypatch.setattr(lm_eval_metrics, "compute_metrics", lambda rows: calls.append(1) or compute_metrics(rows))
    lm_eval_metrics._CACHE.clear()
    doc = {"config": "Math", "id": "x", "tasktype": "PairWise", "subtype": "same", "length": "4k", "order": [1, 0],
           "truncated_tokens": 0, "skipped": False, "overlong": False}
    from longrm_tasks.requests.presentation import record

    records = [record(doc, [1, 0]), record({**doc, "id": "y"}, None)]
    values = {m.name: getattr(lm_eval_metrics, m.function)(list(records)) for m in lm_eval_metrics.METRICS}
    assert len(calls) == 1 and values["AVG"] == 0.5 and values["extra/unparsed_rate"] == 0.5
    # every metric the YAMLs name is a plain function of the module
    yaml_text = (TASK_DIR / "long_rewardbench" / "long_rewardbench_all.yaml").read_text()
    for m in lm_eval_metrics.METRICS:
        assert f"adapters.lm_eval.metrics.{m.function}\n" in yaml_text
        assert callable(getattr(lm_eval_metrics, m.function))


class _Server:
    """A tiny OpenAI-compatible stand-in on 127.0.0.1 that answers GET paths with fixed JSON."""

    def __init__(self, routes: dict[str, dict]):
        routes_ = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = routes_.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {"error": "not found"}).encode())

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_api_server_context_vllm_and_llama_cpp():
    vllm = _Server({"/v1/models": {"data": [{"id": "judge", "max_model_len": 32768}]}})
    llama = _Server({"/v1/models": {"data": [{"id": "m.gguf", "meta": {"n_ctx_train": 131072}}]},
                     "/props": {"default_generation_settings": {"n_ctx": 8192}}})
    silent = _Server({})
    try:
        assert server_context(vllm.url + "/v1/completions", "judge") == (32768, f"server {vllm.url}/v1/models "
                                                                                "max_model_len")
        assert server_context(llama.url + "/v1/chat/completions")[0] == 8192  # the served n_ctx, not n_ctx_train
        assert server_context(silent.url + "/v1/completions")[0] is None
    finally:
        for s in (vllm, llama, silent):
            s.close()


def _bos_tokenizer(tmp_path):
    tok = build_tokenizer()
    tok.bos_token = "<|endoftext|>"
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    path = tmp_path / "bos_tok"
    tok.save_pretrained(path)
    return path


def test_api_models_context_and_a_single_bos(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    tok = _bos_tokenizer(tmp_path)
    server = _Server({"/v1/models": {"data": [{"id": "judge", "max_model_len": 3000}]}})
    common = dict(data_dir="sample", longrm_judge="generative", longrm_configs="Math", tokenizer=str(tok))
    try:
        text = load_dataset(base_url=server.url + "/v1/completions", tokenized_requests=False, **common)["test"]
    finally:
        server.close()
    assert f"max_length 3,000 from server {server.url}/v1/models max_model_len" in _log_line(caplog)
    local = load_dataset(max_length=3000, **common)["test"]
    # the server adds its own BOS to a text prompt: ours is removed; lm-eval's hf backend detects it instead
    assert all(p.startswith("<|endoftext|><|im_start|>system") for p in local["prompt"])
    assert all(p.startswith("<|im_start|>system") for p in text["prompt"])
    assert text["prompt_tokens"] == local["prompt_tokens"]


def test_tokenized_api_requests_need_max_length_chat_apis_do_not(tmp_path, capsys):
    """local-completions would cut prompts to lm-eval's 2,048 default; a chat API sends messages untokenized."""
    from lm_eval.models.api_models import JsonChatStr

    server = _Server({"/v1/models": {"data": [{"id": "judge", "max_model_len": 3000}]}})
    small = _Server({"/v1/models": {"data": [{"id": "judge", "max_model_len": 1700}]}})
    tok = str(_bos_tokenizer(tmp_path))
    try:
        with pytest.raises(InputError, match="is 3,000 tokens.*pass max_length=3000"):
            _manager({"data_dir": "sample", "tokenizer": tok, "base_url": server.url + "/v1/completions"}).load(
                ["long_rewardbench_pairwise_math"])
        assert capsys.readouterr().err.count("Long-RewardBench: field 'max_length'") == 1  # said once, at load
        tm = _manager({"data_dir": "sample", "tokenizer": tok, "base_url": small.url + "/v1/chat/completions"})
        task = tm.load(["long_rewardbench_pairwise_math"])["tasks"]["long_rewardbench_pairwise_math"]
    finally:
        server.close()
        small.close()
    longrm = task.config.metadata["longrm"]
    assert (longrm["max_length"], longrm["max_length_source"]) == (1700, f"server {small.url}/v1/models max_model_len")
    as_messages = lambda messages: JsonChatStr(json.dumps(messages))  # noqa: E731 (lm-eval's chat-API renderer)
    docs = task.test_docs()
    assert any(doc["overlong"] for doc in docs) and not all(doc["overlong"] for doc in docs)
    for doc in docs:  # messages for every document (a chat API takes nothing else); thinking off in every request
        ctx = task.fewshot_context(doc, apply_chat_template=True, chat_template=as_messages)
        assert isinstance(ctx, JsonChatStr)
        chat = task.construct_requests(doc, ctx, metadata=("t", 0, 1))
        assert chat.arguments[1]["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize("served, model_args, expected", [
    # lm-eval's text-completion models keep the last max_length - 1 tokens of every request
    (2048, {}, (2047, "max_model_len minus the 1 token lm-eval's API models hold back for generation")),
    (1500, {}, (1500, "max_model_len")),  # the server is the tighter limit
    (32768, {"max_length": 32768}, (32767, "max_length argument minus the 1 token")),
    (32768, {"tokenized_requests": False}, (32768, "max_model_len")),  # text goes out whole
])
def test_text_completion_context_is_what_lm_eval_and_the_server_keep(served, model_args, expected):
    from longrm_tasks.adapters.lm_eval.api_context import api_model_context

    server = _Server({"/v1/models": {"data": [{"id": "judge", "max_model_len": served}]}})
    try:
        value, where = api_model_context(server.url + "/v1/completions", "judge",
                                         max_length=model_args.get("max_length"),
                                         tokenized_requests=model_args.get("tokenized_requests"))
    finally:
        server.close()
    assert value == expected[0] and expected[1] in where, (value, where)


def test_a_larger_gen_kwargs_budget_never_cuts_a_fitted_prompt(tiny_model, caplog):
    """fit: prompts fitted for --metadata max_gen_toks=16, generated with --gen_kwargs max_gen_toks=200."""
    import lm_eval

    caplog.set_level(logging.WARNING, logger=LOGGER)
    max_length, fitted_for, gen = 1024, 16, 200
    meta = {"pretrained": str(tiny_model), "max_length": max_length, "data_dir": "sample", "protocol": "fit",
            "max_gen_toks": fitted_for}
    res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model), "max_length": max_length},
                                  tasks=["long_rewardbench_pairwise_math"], task_manager=_manager(meta), device="cpu",
                                  log_samples=True, gen_kwargs=f"max_gen_toks={gen}")
    samples = res["samples"]["long_rewardbench_pairwise_math"]
    short = [s for s in samples if s["doc"]["prompt_tokens"] + gen > max_length]
    assert short  # the sample's Math prompts are fitted to 1,000 tokens: 200 more do not fit
    for s in samples:
        assert s["arguments"][0][1]["max_gen_toks"] == min(gen, max_length - s["doc"]["prompt_tokens"])
    line = next(r.getMessage() for r in caplog.records if "differs from the" in r.getMessage())
    assert f"max_gen_toks={gen} differs from the {fitted_for} tokens" in line and f": {len(short)} prompts" in line
    assert res["results"]["long_rewardbench_pairwise_math"]["extra/short_budget,none"] == len(short)
    assert res["configs"]["long_rewardbench_pairwise_math"]["metadata"]["longrm"]["gen_tokens"] == gen


def test_a_fit_context_with_no_room_for_a_prompt_is_one_error(tiny_model, caplog):
    """``max_length`` at the generation budget + MARGIN holds no prompt token: refused naming ``max_length``
    (with the budget to pass); one token more loads, and the items that do not fit are counted as skipped."""
    common = dict(data_dir="sample", longrm_judge="generative", longrm_configs="Math", pretrained=str(tiny_model),
                  protocol="fit", max_gen_toks=100)
    with pytest.raises(InputError, match="leaves no room for the prompt.*max_gen_toks=N") as err:
        load_dataset(max_length=100 + MARGIN, **common)
    assert err.value.field == "max_length"
    docs = load_dataset(max_length=100 + MARGIN + 1, **common)["test"]
    assert all(docs["skipped"]) and len(docs) == len(select(load_benchmark("sample").items, configs=["Math"]))
