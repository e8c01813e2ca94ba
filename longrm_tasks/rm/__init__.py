"""Scalar reward-model scoring for Long-RewardBench items (shared-prefix, token-accounted)."""
