"""LongRM trainer on TRL: SFT cold start, multi-reject alignment, Bradley-Terry RMs, data synthesis.

Modules pair a config dataclass with its trainer the way TRL does
(``x_config.py`` next to ``x_trainer.py``); heavy imports stay inside them.
"""
