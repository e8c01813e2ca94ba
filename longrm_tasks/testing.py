"""Tiny random-weight models and an offline tokenizer, built on the spot.

Used by the test-suite, the benchmarks and `longrm demo`: these machines reach
no model hub, so everything that needs "a model" gets one of these. The
tokenizer is a byte-level BPE trained in memory, so any text (long contexts,
judge prompts, non-ASCII) encodes; its chat template is ChatML with Qwen3's
``enable_thinking`` switch so prompt code paths see a realistic template.
"""
from __future__ import annotations

import os
from pathlib import Path

# The generation prompt both ChatML-style templates end with; thinking off adds Qwen3's empty block.
_GENERATION_PROMPT = (
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{ '<think>\n\n</think>\n\n' }}"
    "{%- endif -%}"
    "{%- endif -%}"
)

CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
) + _GENERATION_PROMPT

# Qwen3's template as it treats thinking: the last assistant turn is rendered after an empty
# <think></think> block (Qwen3 strips any reasoning from it), and the generation prompt with
# enable_thinking=False ends with the same block, so a prompt is a prefix of its conversation.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1].lstrip('\n') -%}{%- endif -%}"
    "{%- if loop.last -%}"
    "{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' + content + '<|im_end|>\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>assistant\n' + content + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
) + _GENERATION_PROMPT

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please act as an impartial judge and evaluate the quality of the responses.",
    "[[A]] [[B]] [[A>B>C]] [[C>A>B>D]] [Analysis] [Ranking] [Score: 7]",
    "[User Question] [The Start of Assistant A's Answer] [The End of Assistant B's Answer]",
    "system user assistant context document question answer long reward model",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 the of and to in is that for it with as",
]


def build_tokenizer(vocab_size: int = 512, model_max_length: int = 1 << 20, chat_template: str | None = None):
    """A byte-level BPE `PreTrainedTokenizerFast` with a ChatML chat template (or ``chat_template``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        bos_token=None,
        unk_token=None,
        model_max_length=model_max_length,
    )
    fast.chat_template = chat_template or CHATML_TEMPLATE
    return fast


def _config(arch: str, vocab_size: int, hidden: int, layers: int, heads: int, kv_heads: int,
            max_positions: int, sliding_window: int | None = None, **extra):
    import transformers

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        **extra,
    )
    if arch == "llama":
        return transformers.LlamaConfig(**common)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common)
    if arch == "qwen3":
        return transformers.Qwen3Config(head_dim=hidden // heads, **common)
    if arch == "gemma":
        return transformers.GemmaConfig(head_dim=hidden // heads, **common)
    # Sliding-window families, with a window short enough that test contexts cross it.
    window = sliding_window or SLIDING_WINDOW
    if arch == "gemma2":  # sliding/global alternation and attention-logit soft-capping (eager attention)
        return transformers.Gemma2Config(head_dim=hidden // heads, sliding_window=window, attn_logit_softcapping=5.0,
                                         query_pre_attn_scalar=hidden // heads, attn_implementation="eager", **common)
    if arch == "gemma3":  # Gemma 3's sliding/global mix (every other layer global here, not every sixth)
        types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
        return transformers.Gemma3TextConfig(head_dim=hidden // heads, sliding_window=window, layer_types=types,
                                             query_pre_attn_scalar=hidden // heads, **common)
    if arch == "mistral":  # one window on every layer
        return transformers.MistralConfig(head_dim=hidden // heads, sliding_window=window, **common)
    raise ValueError(f"unknown tiny architecture {arch!r} ({', '.join(TINY_ARCHITECTURES)})")


TINY_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "mistral")
SLIDING_WINDOW = 16  # tokens, on the tiny sliding-window architectures


def build_model(kind: str = "causal", arch: str = "llama", *, tokenizer=None, hidden: int = 64,
                layers: int = 2, heads: int = 4, kv_heads: int = 2, max_positions: int = 1 << 18,
                vocab_size: int | None = None, seed: int = 0, num_labels: int = 1,
                sliding_window: int | None = None):
    """A random-weight model. ``kind`` is ``causal`` or ``seq-cls`` (scalar reward model).

    ``sliding_window`` sets the window of the sliding-window architectures (default `SLIDING_WINDOW`).
    """
    import torch
    import transformers

    tokenizer = tokenizer or build_tokenizer()
    vocab = vocab_size or len(tokenizer)
    config = _config(arch, vocab, hidden, layers, heads, kv_heads, max_positions, sliding_window,
                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                     bos_token_id=None)
    torch.manual_seed(seed)
    if kind == "causal":
        model = transformers.AutoModelForCausalLM.from_config(config)
    elif kind == "seq-cls":
        config.num_labels = num_labels
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        raise ValueError(f"unknown model kind {kind!r} (causal, seq-cls)")
    model.eval()
    return model, tokenizer


def save_tiny_model(path: str | os.PathLike, kind: str = "causal", arch: str = "llama", **kwargs) -> Path:
    """Build a tiny model and tokenizer and save both to ``path`` (loadable with from_pretrained)."""
    path = Path(path)
    model, tokenizer = build_model(kind, arch, **kwargs)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_prompt_and_responses(seed: int, prompt_len: int, response_lens, vocab: int):
    """Random token ids for one prompt and its responses (ids >= 5, clear of special tokens), seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(5, vocab, (n,), generator=g).tolist()  # noqa: E731
    return ids(prompt_len), [ids(n) for n in response_lens]


def full_logits_logps(model, prompt, responses):
    """Reference for the training log-probs: the model's own forward on each prompt + response (its own
    masks and attention), full-vocabulary logits, log-softmax, gather, summed over the response."""
    import torch

    out = []
    for response in responses:
        ids = torch.tensor([prompt + response])
        logps = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        out.append(logps.gather(-1, torch.tensor(response)[:, None]).sum())
    return torch.stack(out)
