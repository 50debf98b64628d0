"""Helpers shared by the pruner tests."""
import torch
from torch import nn

from cubist.spiral import make_spiral


def spiral_subset(k: int):
    """Every k-th point of the Cubist Spiral (both classes stay balanced)."""
    X, y = make_spiral()
    return X[::k], y[::k]


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, bias=False)  # as in ResNets: no bias, then BatchNorm
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.bn(self.conv2(x)))
        return self.fc(x.flatten(1))
