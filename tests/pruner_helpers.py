"""Helpers shared by the pruner tests."""
from cubist.spiral import make_spiral


def spiral_subset(k: int):
    """Every k-th point of the Cubist Spiral (both classes stay balanced)."""
    X, y = make_spiral()
    return X[::k], y[::k]
