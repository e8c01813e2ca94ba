"""Stage II alignment: the loss against TRL's SimPO, shared-context gradients, response-only log-probs."""
import pytest
import torch

pytest.importorskip("trl", reason="the [train] extra (TRL) is not installed")

from longrm_tasks.testing import build_model, full_logits_logps, random_prompt_and_responses  # noqa: E402
from longrm_tasks.train.alignment.losses import multi_reject_loss  # noqa: E402
from longrm_tasks.train.shared_context import (enable_shared_prefix_attention, shared_context_logps,  # noqa: E402
                                               unshared_logps)


@pytest.mark.parametrize("share", [True, False])
def test_response_only_logps_equal_full_logits(share):
    model, tok = build_model(arch="llama", hidden=32, layers=2)
    enable_shared_prefix_attention(model)
    prompt, responses = random_prompt_and_responses(0, 40, [6, 1, 9], len(tok))
    fn = shared_context_logps if share else unshared_logps
    # a chunk smaller than a response exercises the chunking over positions
    logps, lengths = fn(model, prompt, responses, logit_chunk_size=4)
    torch.testing.assert_close(logps, full_logits_logps(model, prompt, responses), rtol=1e-5, atol=1e-5)
    assert lengths.tolist() == [6, 1, 9]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("num_rejected", [1, 3])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_shared_context_gradients_equal_unshared(arch, num_rejected, checkpointing):
    model, tok = build_model(arch=arch, hidden=32, layers=2)
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()
    enable_shared_prefix_attention(model)
    prompt, responses = random_prompt_and_responses(1, 48, [5, 8, 3, 11][:num_rejected + 1], len(tok))
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(fn):
        logps, lengths = fn(model, prompt, responses, logit_chunk_size=7)
        out = multi_reject_loss(logps[:1], lengths[:1], logps[None, 1:], lengths[None, 1:])
        return out.loss.detach(), torch.autograd.grad(out.loss, params)

    shared_loss, shared = grads(shared_context_logps)
    unshared_loss, unshared = grads(unshared_logps)
    torch.testing.assert_close(shared_loss, unshared_loss, rtol=1e-5, atol=1e-6)
    worst = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item() for a, b in zip(shared, unshared))
    assert worst < 1e-5, worst
    assert all(g.abs().sum() > 0 for g in shared), "every parameter, the context's included, gets a gradient"


def test_shared_forward_builds_no_quadratic_mask():
    model, tok = build_model(arch="llama", hidden=32, layers=1)
    enable_shared_prefix_attention(model)
    masks = []
    model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs.get("attention_mask")), with_kwargs=True)
    prompt, responses = random_prompt_and_responses(4, 30, [4, 6], len(tok))
    shared_context_logps(model, prompt, responses)
    assert masks == [None]  # only the small response-rows mask inside the attention, no L x L one


def test_shared_attention_leaves_ordinary_forward_unchanged():
    model, tok = build_model(arch="qwen3", hidden=32, layers=1)
    ids = torch.tensor([[7, 8, 9, 10, 11], [12, 13, 14, tok.pad_token_id, tok.pad_token_id]])
    mask = (ids != tok.pad_token_id).long()
    before = model(ids, attention_mask=mask).logits
    enable_shared_prefix_attention(model)
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, before)


def test_multi_reject_loss_formula():
    chosen, chosen_len = torch.tensor([-6.0]), torch.tensor([3.0])
    rejected, rejected_len = torch.tensor([[-8.0, -3.0]]), torch.tensor([[4.0, 1.0]])
    out = multi_reject_loss(chosen, chosen_len, rejected, rejected_len, beta=2.5, gamma=0.5, nll_weight=0.05)
    logit = 2.5 * (-6 / 3) - 2.5 / 2 * (-8 / 4 + -3 / 1) - 0.5
    expected = -torch.nn.functional.logsigmoid(torch.tensor(logit)) + 0.05 * 6 / 3
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([[-5.0, -7.5]]))


def test_v1_loss_matches_trl_cpo_simpo(tmp_path):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    model, tok = build_model(arch="llama", hidden=32, layers=2)
    beta, gamma, nll_weight = 2.5, 0.5, 0.05
    config = CPOConfig(output_dir=str(tmp_path), loss_type="simpo", beta=beta, simpo_gamma=gamma,
                       cpo_alpha=nll_weight, label_smoothing=0.0, max_length=256, report_to=[], bf16=False,
                       use_cpu=True, activation_checkpointing=False)
    dummy = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    trl_trainer = CPOTrainer(model=model, args=config, train_dataset=dummy, processing_class=tok)

    items = [random_prompt_and_responses(seed, p, [c, r], len(tok)) for seed, p, c, r in [(2, 30, 7, 4), (3, 22, 3, 9)]]

    def padded(key: int):
        seqs = [prompt + responses[key] for prompt, responses in items]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        labels = torch.full((len(seqs), width), -100)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, ((prompt, _), seq) in enumerate(zip(items, seqs)):
            ids[row, :len(seq)] = torch.tensor(seq)
            labels[row, len(prompt):len(seq)] = torch.tensor(seq[len(prompt):])
            mask[row, :len(seq)] = 1
        return ids, mask, labels

    batch = {}
    for name, key in (("chosen", 0), ("rejected", 1)):
        batch[f"{name}_input_ids"], batch[f"{name}_attention_mask"], batch[f"{name}_labels"] = padded(key)
    trl_loss, trl_metrics = trl_trainer.get_batch_loss_metrics(model, batch)

    enable_shared_prefix_attention(model)
    logps, lengths = zip(*(shared_context_logps(model, prompt, responses) for prompt, responses in items))
    logps, lengths = torch.stack(logps), torch.stack(lengths)
    ours = multi_reject_loss(logps[:, 0], lengths[:, 0], logps[:, 1:], lengths[:, 1:],
                             beta=beta, gamma=gamma, nll_weight=nll_weight)
    torch.testing.assert_close(ours.loss, trl_loss, rtol=1e-5, atol=1e-6)
    assert ours.chosen_rewards.mean().item() == pytest.approx(trl_metrics["rewards/chosen"], rel=1e-5)
    assert ours.nll_loss.item() == pytest.approx(trl_metrics["nll_loss"], rel=1e-5)


def test_disable_dropout_zeroes_every_dropout_module_as_trl_does():
    import torch

    from longrm_tasks.train.alignment.trainer import disable_dropout

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5),
                                torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(8, 2)))
    model.train()
    x = torch.randn(4, 8)
    assert not torch.equal(model(x), model(x))  # dropout on: two training passes differ
    disable_dropout(model)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]
    assert torch.equal(model(x), model(x))
    trl_utils = pytest.importorskip("trl.trainer.utils")
    reference = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Sequential(torch.nn.Dropout(0.2)))
    trl_utils.disable_dropout_in_model(reference)
    assert [m.p for m in reference.modules() if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]
