"""A local OpenAI-compatible judge server that fails on purpose, for the runtime fault tests.

A real HTTP server on 127.0.0.1 (a free port), served by a daemon thread of the test process.
The judge model's name picks the fault; each prompt's first ``fail_times[model]`` requests fail
that way, later ones are answered, so a client that retries gets through and one that gives up
can be resumed once the fault is "fixed" (``heal``):

- ``ok``: always answers;
- ``e500``: HTTP 500 with an error body;
- ``garbage``: HTTP 200 with a body that is not JSON (content type JSON all the same);
- ``nochoices``: HTTP 200, ``{"choices": []}``;
- ``stall``: answers only after ``stall_seconds`` (longer than the client's timeout);
- ``drop``: closes the connection without a response.

Each answer is ``[Score: N]`` with N fixed per response text, so every judge agrees and a run's
output does not depend on which faults it met.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

import local_servers

SCORES = {"Orange.": 8, "Blue.": 3, "Green.": 6, "Red.": 5, "Grey.": 7, "Black.": 2}
FAULTS = ("e500", "garbage", "nochoices", "stall", "drop")


def response_text(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return text.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def judge_record(i: int, response: str) -> dict:
    """An input record of `longrm synth vote` whose judged response is ``response``."""
    user = f"<prompt>\nWhat colour is the door?\n</prompt>\n<response>\n{response}\n</response>\n"
    return {"id": f"r{i}", "messages": [{"role": "system", "content": "Judge it."},
                                        {"role": "user", "content": user}]}


class FaultyJudge(local_servers.QuietHandler):
    requests: Counter = Counter()  # (model, response) -> requests seen
    fail_times: dict = {}  # model -> how many requests of each prompt fail (default 1)
    stall_seconds = 1.0
    healed = False  # set by `heal`: every request is answered
    lock = threading.Lock()

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, response = body["model"], response_text(body)
        with self.lock:
            self.requests[(model, response)] += 1
            failing = not self.healed and self.requests[(model, response)] <= self.fail_times.get(model, 1)
        if model in FAULTS and failing:
            if model == "e500":
                return self._send(500, b'{"error": {"message": "internal server error", "type": "server_error"}}')
            if model == "garbage":
                return self._send(200, b'{"choices": [{"message": {"content": "[Score')
            if model == "nochoices":
                return self._send(200, b'{"id": "x", "object": "chat.completion", "choices": []}')
            if model == "stall":
                time.sleep(self.stall_seconds)
            if model == "drop":
                self.close_connection = True
                return None
        text = f"[Analysis]\n{model} judged {response}\n[Score: {SCORES[response]}]"
        payload = {"id": "c", "object": "chat.completion", "created": 0, "model": model,
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}]}
        return self._send(200, json.dumps(payload).encode())

    @classmethod
    def reset(cls, fail_times: dict | None = None) -> None:
        with cls.lock:
            cls.requests.clear()
            cls.fail_times = dict(fail_times or {})
            cls.healed = False

    @classmethod
    def heal(cls) -> None:
        """From now on every request is answered."""
        with cls.lock:
            cls.healed = True


def start_server():
    """(base_url, stop): the server runs until ``stop()``."""
    url, stop = local_servers.start(FaultyJudge)
    return url + "/v1", stop
