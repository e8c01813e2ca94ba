"""An independent transcription of the benchmark authors' evaluator, used as the test oracle.

Follows LCM-Lab/Long-RM evaluate/evaluating/longreward_bench/{utils/prompt.py
(extract_judgement), evaluator.py (evaluate: compare_shuffled and the
aggregation), preprocess.py (the order loop)} statement by statement, with
plain lists instead of `datasets` filters. It is deliberately literal, quirks
included, so our own implementation is checked against the reference's
behaviour rather than against itself.
"""
import random
import re

TASKS = ["LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math"]


def extract_judgement(judgment, type="pair", is_disrm=False):
    if is_disrm:
        orders = [(i, k) for i, k in enumerate(judgment)]
        orders.sort(key=lambda x: x[1], reverse=True)
        ranks = [k[0] for k in orders]
        return [ranks.index(i) for i in range(len(ranks))]
    if type == "pair":
        if "[[A]]" in judgment:
            return [0, 1]
        elif "[[B]]" in judgment:
            return [1, 0]
        return []
    pattern = r"\[[\w\s]+(?:\s*>\s*[\w\s]+)+\]"
    if len(judgment.split(">")) > 10:
        return []
    matches = re.findall(pattern, judgment)
    try:
        ret = matches[0].split(">")
        for marks in ["assistant", "Assistant", ":", " "]:
            ret = [k.replace(marks, "") for k in ret]
        ret[0] = ret[0].strip("[")
        ret[-1] = ret[-1].strip("]")
        ids = [ord(k) - ord("A") for k in ret]
        return [ids.index(k) for k in range(len(ids))]
    except Exception:
        return []


def compare_shuffled(golden, result):
    if not result:
        return 0
    return sum(int(a == b) for a, b in zip(golden, result)) / len(golden)


def evaluate(answers, is_disrm=False, tasks=TASKS):
    results = [compare_shuffled(a["shuffled_order"],
                                extract_judgement(a["output"], "rank" if a["tasktype"] == "BestOfN" else "pair",
                                                  is_disrm=is_disrm)) for a in answers]
    rows = [dict(subset=a["subset"], type=a["tasktype"], subtype=str(a["subtype"]), length=a["ctx_length"],
                 result=r) for a, r in zip(answers, results)]
    pair = [r for r in rows if r["type"] == "PairWise"]
    bon = [r for r in rows if r["type"] == "BestOfN"]

    def acc(group):
        return sum(r["result"] for r in group) / max(len(group), 1)

    out = {}
    for name in tasks:
        out[name] = acc([r for r in pair if r["subset"] == name])
    out["Same"] = acc([r for r in pair if r["subtype"] == "same"])
    out["Diff"] = acc([r for r in pair if r["subtype"] != "same"])
    out["PairWise Avg"] = acc(pair)
    for k in (2, 3, 4):
        out[f"Rank{k}"] = acc([r for r in bon if r["subtype"] == str(k)])
    out["Rank Avg"] = acc(bon)
    for length in ["4k", "8k", "16k", "32k", "64k", "128k"]:
        out[length] = acc([r for r in pair if r["length"] == length])
    out["AVG"] = acc(rows)
    return out


def reference_orders(records):
    """The preprocess loop: returns {index: shuffled_order} for one config file's records."""
    random.seed(42)
    dataset = [dict(r) for r in records]
    for index, data in enumerate(dataset):
        data["index"] = index
    random.shuffle(dataset)
    orders = {}
    for data in dataset:
        n = len(data["candidates"]) if data.get("tasktype") == "BestOfN" else 2
        order = list(range(n))
        random.shuffle(order)
        orders[data["index"]] = order
    return orders
