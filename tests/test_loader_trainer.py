"""The ImageNet trainer's fast masked step (``Prunable.mask_by_gradient``) against the plain
product ``weight_orig * mask`` with the masked entries zeroed after every step."""
import pytest
import torch

from pruner_helpers import SmallCNN
from pruners.base import PruneContext, get_method
from pruners.layers import Prunable, prunable_layers
from pruners.trainer_loader import LoaderTrainer, Recipe


class Batches:
    """A fixed list of (x, y) batches, as a DataLoader offers them."""

    def __init__(self, n_steps, batch, seed):
        g = torch.Generator().manual_seed(seed)
        self.batches = [(torch.randn(batch, 1, 6, 6, generator=g), torch.randint(0, 3, (batch,), generator=g))
                        for _ in range(n_steps)]
        self.batch_size = batch

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _run(fast: bool, monkeypatch, method: str | None, nesterov: bool):
    with monkeypatch.context() as mp:
        if not fast:  # the product path everywhere, zeroing after every step (the trainer's slow path)
            mp.setattr(Prunable, "gradient_maskable", property(lambda self: False))
        torch.manual_seed(0)
        model = SmallCNN()
        layers = prunable_layers(model)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            for l in layers:
                l.module.weight_mask.copy_((torch.rand(l.module.weight_mask.shape, generator=g) < 0.5).float())
                l.zero_masked_()
        recipe = Recipe(epochs=3, lr=0.1, momentum=0.9, weight_decay=5e-3, nesterov=nesterov, schedule="cosine")
        tr = LoaderTrainer(model, layers, Batches(7, 16, 2), recipe)
        kw = {}
        if method is not None:  # masks shrink twice during training (momentum cleared, weights zeroed)
            m = get_method(method)()
            nnz = sum(int(l.mask.sum()) for l in layers)
            ctx = PruneContext(model, tr, layers, [nnz // 3], m.config, seeds=[0], method_name=method)

            def after(k):
                if k in (4, 11):
                    g = torch.Generator().manual_seed(k)
                    ctx.set_masks([(l.mask != 0) & (torch.rand(l.mask.shape, generator=g) < 0.6) for l in layers])
            kw = {"after_step": after}
        tr.train(**kw)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, layers


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_fast_step_gives_the_product_path_bit_for_bit(nesterov, monkeypatch):
    fast, layers = _run(True, monkeypatch, None, nesterov)
    slow, _ = _run(False, monkeypatch, None, nesterov)
    assert fast.keys() == slow.keys()
    assert all(torch.equal(fast[k], slow[k]) for k in fast), [k for k in fast if not torch.equal(fast[k], slow[k])]
    for l in layers:  # the masked raw weights stayed exactly 0, and the modules gained no Parameter
        assert torch.all(l.param[l.module.weight_mask == 0] == 0)
        assert "weight" not in l.module._parameters
        assert not getattr(l.module, "mask_by_gradient")  # off outside the training forward


def test_the_fast_step_moves_the_weights_and_respects_the_mask(monkeypatch):
    fast, layers = _run(True, monkeypatch, None, False)
    torch.manual_seed(0)
    init = SmallCNN().state_dict()
    changed = [k for k in fast if k.endswith("weight_orig") and not torch.equal(fast[k], init[k.replace("_orig", "")]
                                                                               * fast[k.replace("orig", "mask")])]
    assert len(changed) == 3  # training did something to every layer's kept weights


def test_mask_changes_during_training_match_the_product_path(monkeypatch):
    fast, layers = _run(True, monkeypatch, "gmp", False)
    slow, _ = _run(False, monkeypatch, "gmp", False)
    assert all(torch.equal(fast[k], slow[k]) for k in fast)
    masks = [fast[k] for k in fast if k.endswith("weight_mask")]
    assert sum(int(m.sum()) for m in masks) < sum(int(l.module.weight_mask.numel()) for l in layers) * 0.5 * 0.6


def test_a_mask_that_requires_grad_takes_the_product(monkeypatch):
    torch.manual_seed(0)
    model = SmallCNN()
    layers = prunable_layers(model)
    l = layers[0]
    with torch.no_grad():
        l.module.weight_mask[0].zero_()
        l.zero_masked_()
    l.mask_by_gradient(True)
    try:
        mask = l.module.weight_mask.clone().requires_grad_(True)
        l.module.weight_mask = mask
        model(torch.randn(2, 1, 6, 6)).sum().backward()
        assert mask.grad is not None and mask.grad.abs().sum() > 0  # SNIP's sensitivity needs the product
    finally:
        l.mask_by_gradient(False)
