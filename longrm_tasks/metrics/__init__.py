"""Judged rows -> the benchmark's metrics (paper names) and ours under ``extra``."""
