"""inside.py: attention weights as SDPA applies them, rollout, probes, nearest words and the ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tutor_lib import ModelConfig, MultimodalModel, inside, make_dataset
from tutor_lib.evaluate import evaluate
from tutor_lib.pretrain import patch_coverage
from tutor_lib.vocab import START

CFG = ModelConfig(image_size=24, patch_size=8, vision_dim=16, llm_dim=16, num_heads=2, num_layers=2)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = MultimodalModel(CFG).eval()
    data = make_dataset(12, image_size=24, seed=1)
    return model, data


def test_attention_weights_are_the_ones_sdpa_applies(setup):
    model, data = setup
    ids = inside.question_prompts(data, "color")  # (12, 5)
    logits, attention = inside.attention_weights(model, data.images, ids)
    T = model.num_patches + ids.shape[1]
    assert attention.shape == (2, 12, 2, T, T)
    assert torch.equal(logits, model(data.images, ids))  # the model's own forward, hooks only watch
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 12, 2, T))
    assert (attention.triu(1) == 0).all()  # causal: nothing from the future
    # Rebuild block 1's attention output from the weights: it must equal what the block computed.
    block = model.language_model.blocks[0]
    x = torch.cat([model.encode_images(data.images), model.language_model.token_embedding(ids)], 1)
    x = block.norm1(x + model.language_model.position_embedding(torch.arange(T)))
    _, _, v = block.attn.qkv(x).split(CFG.llm_dim, 2)
    v = v.view(12, T, 2, 8).transpose(1, 2)  # (B, heads, T, head_dim)
    manual = block.attn.out((attention[0] @ v).transpose(1, 2).reshape(12, T, CFG.llm_dim))
    with torch.no_grad():
        torch.testing.assert_close(manual, block.attn(x), atol=1e-5, rtol=1e-5)
    assert not any(b.attn._forward_pre_hooks for b in model.language_model.blocks)  # hooks removed


def test_attention_weights_accept_replaced_visual_tokens(setup):
    model, data = setup
    ids = inside.question_prompts(data, "shape")
    visual = torch.zeros(12, model.num_patches, CFG.llm_dim)
    logits, _ = inside.attention_weights(model, data.images, ids, visual=visual)
    expected = model.language_model(torch.cat([visual, model.language_model.token_embedding(ids)], 1))
    torch.testing.assert_close(logits, expected)


def test_attention_rollout_by_hand():
    a1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    a2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    heads = torch.stack([a1, a1])[None]  # (B=1, heads=2, 2, 2)
    one = inside.attention_rollout(heads[None])  # one layer
    torch.testing.assert_close(one[0], torch.tensor([[1.0, 0.0], [0.25, 0.75]]))
    two = inside.attention_rollout(torch.stack([heads, torch.stack([a2, a2])[None]]))  # then an identity layer
    torch.testing.assert_close(two[0], one[0])
    # the last layer applies last: rows of the product stay distributions
    rand = torch.rand(3, 2, 4, 5, 5).tril()
    rand = rand / rand.sum(-1, keepdim=True)
    assert torch.allclose(inside.attention_rollout(rand).sum(-1), torch.ones(2, 5))


def test_linear_probe_accuracy_reads_a_linear_property_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    assert inside.linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:]) >= 0.9  # least squares: a few near the line miss
    noise = torch.randint(3, (200,), generator=g)
    assert inside.linear_probe_accuracy(x[:150], noise[:150], x[150:], noise[150:]) < 0.6
    assert isinstance(inside.linear_probe_accuracy(x, y, x, y), float)


def test_nearest_tokens_finds_each_embedding_itself():
    emb = torch.randn(20, 16)
    assert torch.equal(inside.nearest_tokens(emb[None] * 3.0, emb)[0], torch.arange(20))


def test_probe_features_sites_and_the_start_state(setup):
    model, data = setup
    features = inside.probe_features(model, data.images)
    assert list(features) == ["vision encoder", "projector", "LM layer 1", "LM layer 2"]
    assert features["vision encoder"].shape == (12, 16) and features["LM layer 2"].shape == (12, 16)
    lm = model.language_model
    with torch.no_grad():  # the final state at <start>, through the norm and head, is the model's logit there
        logits = lm.output_head(lm.norm(features["LM layer 2"]))
        torch.testing.assert_close(logits, model(data.images, torch.full((12, 1), START))[:, -1], atol=1e-5, rtol=1e-5)


def test_shuffle_tokens_permutes_each_image_on_its_own():
    visual = torch.arange(2 * 9 * 3, dtype=torch.float32).view(2, 9, 3)
    shuffled = inside.shuffle_tokens(visual, seed=0)
    assert torch.equal(shuffled, inside.shuffle_tokens(visual, seed=0))
    for b in range(2):  # the same tokens, whole, in another order
        assert sorted(map(tuple, shuffled[b].tolist())) == sorted(map(tuple, visual[b].tolist()))
    assert not torch.equal(shuffled, visual)
    order = shuffled[:, :, 0] // 3 % 9  # token index of each slot
    assert not torch.equal(order[0], order[1])


def test_mask_tokens_and_covered_patches(setup):
    _, data = setup
    covered = inside.covered_patches(data)
    assert torch.equal(covered, patch_coverage(data.colors, data.shapes, data.positions, 24, 8))
    visual = torch.randn(12, 9, 4)
    blank = torch.zeros(1, 9, 4)
    masked = inside.mask_tokens(visual, covered, blank)
    assert (masked[covered] == 0).all() and torch.equal(masked[~covered], visual[~covered])


def test_accuracy_with_visual_of_the_image_is_evaluate(setup):
    model, data = setup
    with torch.no_grad():
        visual = model.encode_images(data.images)
    per_type = inside.accuracy_with_visual(model, data, visual)
    expected = evaluate(model, data)
    assert per_type == {q: expected[q] for q in per_type}
    assert set(per_type) <= {"color", "shape", "position"}
    assert F.one_hot(data.question_types).sum(0).gt(0).sum() == len(per_type)
