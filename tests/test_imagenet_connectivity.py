"""Effective density of a small ResNet with hand-made masks equals the count made by hand."""
import torch
from torch import nn

from pruners.connectivity_conv import connectivity_counts, effective_masks
from pruners.layers import prunable_layers


class Block(nn.Module):
    """conv a - BN - ReLU - conv b - BN, plus the identity shortcut, then ReLU."""

    def __init__(self, c):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.b, self.bn_b = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))) + x)


class TinyResNet(nn.Module):
    def __init__(self, c=4, classes=2):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.block = Block(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.block(torch.relu(self.bn(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_hand_made_masks_give_the_hand_count():
    torch.manual_seed(0)
    net = TinyResNet()
    layers = prunable_layers(net)          # stem (4,3,3,3), a (4,4,3,3), b (4,4,3,3), fc (2,4)
    stem, a, b, fc = [l.module for l in layers]
    with torch.no_grad():
        for m in (net.bn, net.block.bn_a, net.block.bn_b):   # BatchNorm shifts that would fake life
            m.bias.fill_(0.5)
            m.running_mean.fill_(-0.3)
        a.weight_mask[1] = 0        # (1) channel 1 of conv a cut off upstream (all its inputs)
        b.weight_mask[:, 2] = 0     # (2) channel 2 of conv a feeds nothing downstream
        fc.weight_mask[:, 3] = 0    # (3) block output channel 3 never read; the shortcut bypasses
        stem.weight_mask[0, 0] = 0  # an ordinary pruned stem weight (9 weights)
    nnz = {"stem": 4 * 27 - 9, "a": 3 * 36, "b": 4 * 36 - 4 * 9, "fc": 2 * 3}
    # hand count of the weights on no input-to-output path:
    lost_b = 4 * 9          # b[:, 1]: reads channel 1 of conv a, which is never reached (BN shift ignored)
    lost_b += 9 * 2         # b[3, j] for j in {0, 3} (j = 1, 2 counted or masked): output channel 3 reaches nothing
    lost_a = 4 * 9          # a[2, :]: channel 2 feeds nothing (b[:, 2] masked)
    want = {"stem": nnz["stem"], "a": nnz["a"] - lost_a, "b": nnz["b"] - lost_b, "fc": nnz["fc"]}
    eff = effective_masks(net, layers, (3, 6, 6))
    got = dict(zip(("stem", "a", "b", "fc"), (int(e.sum()) for e in eff)))
    assert got == want
    # the shortcut keeps stem channel 3 alive although block output channel 3 is never read
    assert bool(eff[0][3].all())
    c = connectivity_counts(net, layers, (3, 6, 6))
    assert c["weight_nnz"] == sum(nnz.values()) and c["effective_nnz"] == sum(want.values())
    assert c["dead_channels"] == [0, 2, 1, 0]   # a: channels 1 and 2; b: channel 3
    assert abs(c["effective_density"] - sum(want.values()) / (108 + 144 + 144 + 8)) < 1e-12


def test_a_dense_torchvision_resnet_is_fully_effective_and_untouched():
    import torchvision
    net = torchvision.models.resnet18(num_classes=3)
    layers = prunable_layers(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    c = connectivity_counts(net, layers, (3, 32, 32))
    assert c["effective_nnz"] == c["weight_nnz"] == c["dense_weights"]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    # cutting every input of layer1's first conv leaves the block's shortcut: downstream stays effective
    with torch.no_grad():
        layers[1].module.weight_mask.zero_()
    c = connectivity_counts(net, layers, (3, 32, 32))
    second = layers[2].numel
    assert c["effective_nnz"] == c["dense_weights"] - layers[1].numel - second
