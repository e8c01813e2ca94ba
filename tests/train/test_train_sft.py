"""Stage I SFT data: loss on the assistant turn only, long prompts cut in the context, never dropped."""
import json

import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.train.sft import tokenize_sft_file

TOK = build_tokenizer()


def write(tmp_path, records):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def completion_text(row):
    ids = [t for t, m in zip(row["input_ids"], row["completion_mask"]) if m]
    return TOK.decode(ids)


def test_mask_covers_the_assistant_turn_only(tmp_path):
    chat = {"messages": [{"role": "system", "content": "be fair"}, {"role": "user", "content": "question"},
                         {"role": "assistant", "content": "[Analysis] fine [Score: 7]"}]}
    text = {"prompt": "Question: 2+2?", "completion": " 4"}
    stage2 = {"messages": [{"role": "user", "content": "judge this"}], "chosen": "[Score: 3]",
              "rejected": ["[Score: 9]"]}
    rows, stats = tokenize_sft_file(write(tmp_path, [chat, text, stage2]), TOK, max_length=None)
    assert completion_text(rows[0]) == "[Analysis] fine [Score: 7]<|im_end|>\n"
    assert completion_text(rows[1]) == " 4<|im_end|>"  # plain text gets EOS, like TRL
    assert completion_text(rows[2]) == "[Score: 3]<|im_end|>\n"  # Stage II: learn the chosen judgment
    assert stats.examples == 3 and stats.truncated == 0


def test_long_prompt_is_cut_in_the_middle_and_counted(tmp_path):
    context = " ".join(f"w{i}" for i in range(3000))
    record = {"messages": [{"role": "user", "content": "START " + context + " QUESTION?"},
                           {"role": "assistant", "content": "[Score: 5]"}]}
    rows, stats = tokenize_sft_file(write(tmp_path, [record]), TOK, max_length=200)
    row = rows[0]
    assert len(row["input_ids"]) == 200
    assert completion_text(row) == "[Score: 5]<|im_end|>\n"  # the answer survives whole
    prompt = TOK.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if not m])
    assert prompt.startswith("<|im_start|>user\nSTART") and "QUESTION?" in prompt
    assert stats.truncated == 1 and stats.tokens_dropped == stats.longest_input - 200


def test_tagged_key_passage_survives_the_cut(tmp_path):
    filler = " ".join(f"x{i}" for i in range(2000))
    content = f"<context>\n{filler} <LD>KEY FACT: the code is 4242</LD> {filler}\n</context>\nWhat is the code?"
    record = {"prompt": [{"role": "user", "content": content}],
              "completion": [{"role": "assistant", "content": "4242"}]}
    rows, stats = tokenize_sft_file(write(tmp_path, [record]), TOK, max_length=300)
    text = TOK.decode(rows[0]["input_ids"])
    assert len(rows[0]["input_ids"]) == 300
    assert "<LD>KEY FACT: the code is 4242</LD>" in text and "What is the code?" in text
    assert stats.key_passages_kept == 1 and stats.truncated == 1


def test_trl_labels_mask_the_prompt(tmp_path):
    """SFTTrainer receives our rows and builds labels from completion_mask (TRL's own code path)."""
    from trl import SFTConfig

    from longrm_tasks.testing import save_tiny_model
    from longrm_tasks.train.sft import sft_trainer

    model = save_tiny_model(tmp_path / "m", hidden=32, layers=1)
    data = write(tmp_path, [{"prompt": [{"role": "user", "content": "a " * 300}],
                             "completion": [{"role": "assistant", "content": "yes"}]}])
    args = SFTConfig(output_dir=str(tmp_path / "o"), max_length=64, bf16=False, use_cpu=True, report_to="none")
    trainer, report = sft_trainer(str(model), args, data)
    (row,) = trainer.train_dataset
    assert len(row["input_ids"]) == 64 and report["train"]["truncated"] == 1
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert TOK.decode(learned) == "yes<|im_end|>\n"


@pytest.mark.parametrize("record, field, message", [
    ({"messages": [{"role": "user", "content": "q"}]}, "messages", "assistant turn"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "messages[0].content", "missing"),
    ({"prompt": "q", "completion": [{"role": "assistant", "content": "a"}]}, "completion", "plain text"),
    ({"text": "just text"}, None, "unrecognised SFT record"),
])
def test_bad_records_name_file_line_and_field(tmp_path, record, field, message):
    path = write(tmp_path, [{"prompt": "ok", "completion": "fine"}, record])
    with pytest.raises(InputError, match=message) as err:
        tokenize_sft_file(path, TOK, max_length=None)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, field)


def test_response_longer_than_max_length_is_an_error_not_a_silent_cut(tmp_path):
    path = write(tmp_path, [{"prompt": "q", "completion": "long answer " * 50}])
    with pytest.raises(InputError, match="never cut") as err:
        tokenize_sft_file(path, TOK, max_length=20)
    assert err.value.field == "completion"


def _gemma3_sft_trainer(tmp_path, **config):
    """A tiny Gemma-3-style model (sliding/global layers, final-logit soft-capping) through our Stage I trainer."""
    import torch
    import transformers
    from trl import SFTConfig

    from longrm_tasks.train.sft import sft_trainer

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.Gemma3TextConfig(
        vocab_size=len(TOK), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, sliding_window=8, final_logit_softcapping=4.0,
        layer_types=["sliding_attention", "full_attention"], pad_token_id=TOK.pad_token_id,
        eos_token_id=TOK.eos_token_id, bos_token_id=None, tie_word_embeddings=False))
    model.save_pretrained(tmp_path / "m")
    TOK.save_pretrained(tmp_path / "m")
    data = write(tmp_path, [{"prompt": [{"role": "user", "content": "judge " + "a b " * n}],
                             "completion": [{"role": "assistant", "content": "[Score: %d] fine" % n}]}
                            for n in (30, 12, 21)])
    args = SFTConfig(output_dir=str(tmp_path / "o"), max_length=96, bf16=False, use_cpu=True, report_to="none",
                     per_device_train_batch_size=3, **config)
    trainer, _ = sft_trainer(str(tmp_path / "m"), args, data)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    return trainer, batch


def test_response_only_loss_equals_trl_and_full_logits_and_gradients_too(tmp_path):
    import torch
    from trl import SFTTrainer

    trainer, batch = _gemma3_sft_trainer(tmp_path)
    model = trainer.model
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: padding is in the batch
    params = [p for p in model.parameters() if p.requires_grad]
    ours = trainer.compute_loss(model, dict(batch))
    ours_grads = torch.autograd.grad(ours, params)
    trl = SFTTrainer.compute_loss(trainer, model, dict(batch))  # TRL's own loss on the same batch
    trl_grads = torch.autograd.grad(trl, params)
    # the textbook: full-vocabulary logits and the model's own shifted cross-entropy
    textbook = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, textbook, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, trl_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stage_one_never_builds_full_vocabulary_logits(tmp_path):
    """Every tensor the forward and backward produce with a vocabulary-sized dimension has at most as many
    rows as the batch has completion tokens (and the LM head module itself is never called)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    trainer, batch = _gemma3_sft_trainer(tmp_path)
    trainer.logit_block_rows = 8  # several blocks
    vocab = len(TOK)
    completion_tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert batch["input_ids"].numel() > 2 * completion_tokens  # long prompts: a full head would be much bigger

    head_storage = trainer.model.lm_head.weight.untyped_storage().data_ptr()

    class VocabSized(TorchDispatchMode):
        rows = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else [out]):
                # views of the head's own weight (its transpose is hidden x vocab) are not logits
                if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == vocab and \
                        t.untyped_storage().data_ptr() != head_storage:
                    self.rows.append(t.numel() // vocab)
            return out

    calls = []
    trainer.model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    with VocabSized() as mode:
        trainer.compute_loss(trainer.model, dict(batch)).backward()
    assert mode.rows and max(mode.rows) <= 8  # one block of completion rows at a time
    assert not calls
