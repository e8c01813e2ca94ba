"""The judge's side of an item: the benchmark's judge prompts and the orders its answers are shown in."""
