"""lm-eval's side: task class, plugin and hook, options, metrics, report, and the reward-model LMs
(`hf-rm`, `vllm-rm`). Translation only: the core decides."""
