"""LongRM trainer on TRL: SFT cold start, multi-reject alignment, Bradley-Terry RMs, data synthesis.

Parts: ``alignment/`` is Stage II (config, data, losses, trainer: a TRL
config/trainer pair); ``synth/`` the data synthesis with its CLI; ``sample/``
the bundled synthetic training samples beside the generator that writes them.
`stages` is the one table of stage kinds (config class, trainer factory, LoRA
task type, card title), `records` the one reader/normaliser of training
records, `long_inputs` the one tokenisation (the chat template's assistant turn
after the evaluation prompt) and fitting of long examples for every stage.
`recipe` reads a recipe YAML, `runner` runs its stages, `model_card` writes
what each produced; heavy imports stay inside the modules that need them.
"""
