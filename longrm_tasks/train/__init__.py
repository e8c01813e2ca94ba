"""LongRM trainer on TRL: SFT cold start, multi-reject alignment, Bradley-Terry RMs, data synthesis.

Modules pair a config dataclass with its trainer the way TRL does
(``x_config.py`` next to ``x_trainer.py``); heavy imports stay inside them.
`stages` is the one table of stage kinds (config class, trainer factory, LoRA
task type, card title), `records` the one reader/normaliser of training
records, `long_inputs` the one tokenisation (the chat template's assistant turn
after the evaluation prompt) and fitting of long examples for every stage.
`recipe` reads a recipe YAML, `runner` runs its stages, `model_card` writes
what each produced; `samples` holds the bundled synthetic training sample.
"""
