"""Long-RewardBench in RewardBench's formats (allenai/reward-bench, pip ``rewardbench``).

RewardBench cannot live next to transformers 5 / TRL 1.x (its releases pin
transformers 4.51), so the integration goes through its file formats and
scoring rules, plus a run-time hook used only where ``rewardbench`` is
importable:

- ``export``: PairWise items -> RewardBench 1 records, BestOfN items ->
  RewardBench 2 records (``longrm rewardbench export``).
- ``score``: per-candidate scores -> RewardBench's per-subset numbers, its
  results-JSON layout, and the paper's metrics (``longrm rewardbench score``).
- ``hook``: lets ``rewardbench``'s own CLI and ``scripts.run_v2`` load
  Long-RewardBench with long-context defaults (head+tail truncation).
"""
