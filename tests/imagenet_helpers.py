"""Tiny ImageFolder data sets for the ImageNet runner's tests."""
import os

import numpy as np


def tiny_image_folder(root, classes=3, train=12, val=4, size=16, seed=0):
    """``classes`` classes of ``train`` + ``val`` RGB images of ``size`` x ``size``: noise with one
    colour channel raised per class (easy to learn)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = os.path.join(root, split, f"c{c}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                a[..., c % 3] += 150
                Image.fromarray(a).save(os.path.join(d, f"{i}.png"))
    return str(root)
