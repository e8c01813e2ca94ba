"""How a scalar-reward-model task hands an item to the reward-model scorer (``hf-rm`` under lm-eval).

lm-eval's ``multiple_choice`` tasks send one ``loglikelihood`` request per
choice as ``(context, continuation)`` strings. A reward model needs the chat
*messages* (the prompt template) rather than a flat prompt, so the
``long_rewardbench_rm*`` tasks put a small JSON object in ``context`` and the
candidate answer in ``continuation``; ``hf-rm`` decodes the context, appends
``{"role": "assistant", "content": continuation}`` and scores the chat with the
reward model's own template. It returns ``(score, False)`` per request, and the
task turns the scores (shown order) into ranks.

The marker key ``longrm_rm`` lets ``hf-rm`` tell our requests from any other
task's plain-text context (``decode_rm_context`` returns ``None`` for those).
An optional ``protocol`` (``paper`` | ``fit``) tells the scorer which
over-long rule the task measured with (`longrm_tasks.context.fitting`): ``paper`` =
the reference's 131,072-token head/tail rule per candidate, ``fit`` = one middle
span of the context dropped; absent in requests of earlier versions.

Answers: an item the scorer could not score gets ``nan`` for every candidate
(skipped by policy), except a ``paper`` item beyond the model's context, which
gets `OVERLONG_SCORE` (``-inf``): the task scores it wrong and counts it as
over-long, as the generative path does.
"""
from __future__ import annotations

import json
from typing import Any

from longrm_tasks.context.fitting import PROTOCOLS, Protocol

MARKER = "longrm_rm"
VERSION = 1
OVERLONG_SCORE = float("-inf")  # every candidate of a paper item the reward model cannot hold


def encode_rm_context(messages: list[dict[str, str]], item_key: str, protocol: Protocol | None = None) -> str:
    """The ``context`` string of every request of one item (``item_key`` = ``"<config>/<id>"``)."""
    obj = {MARKER: VERSION, "messages": list(messages), "item": item_key}
    if protocol is not None:
        obj["protocol"] = Protocol(protocol).value
    return json.dumps(obj, ensure_ascii=False)


def decode_rm_context(context: str) -> dict[str, Any] | None:
    """``{"messages": [...], "item": "<config>/<id>", "protocol": Protocol | None}`` for our requests, else ``None``.

    Raises ``ValueError`` for a context that carries our marker but is malformed
    (a version we do not know, messages that are not role/content dicts): that
    is a bug or a version mismatch, not someone else's task.
    """
    if not isinstance(context, str) or not context.startswith("{") or MARKER not in context[:64]:
        return None
    try:
        obj = json.loads(context)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or MARKER not in obj:
        return None
    if obj[MARKER] != VERSION:
        raise ValueError(f"reward-model request of version {obj[MARKER]!r}; this longrm-tasks reads {VERSION}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise ValueError(f"reward-model request {obj.get('item')!r}: 'messages' must be a list of "
                         "{role, content} strings")
    protocol = obj.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"reward-model request {obj.get('item')!r}: unknown protocol {protocol!r}")
    return {"messages": messages, "item": str(obj.get("item", "")),
            "protocol": None if protocol is None else Protocol(protocol)}
