"""Long-RewardBench for the tools people already run, and a LongRM trainer.

Heavy dependencies (torch, transformers, lm-eval, trl) are imported lazily by
the modules that need them, so `import longrm_tasks` stays cheap.
"""
__version__ = "0.1.0"

BENCHMARK_NAME = "Long-RewardBench"
HUB_DATASET = "LCM-Lab/LongRewardBench"
