"""Training images per second of the ImageNet runner's trainer (masks on, a method's hooks on)
against a plain torchvision-style loop, same model, data and machine, in the same process.

    python bench/imagenet_throughput.py [--arch resnet50] [--image-size 64] [--batch 32] [--steps 20]

Both loops take the same synthetic batches (decoding is not measured: it is the same for both),
SGD momentum 0.9 and weight decay 1e-4, bf16 autocast and channels-last on CUDA. The runner's
loop is :class:`pruners.trainer_loader.LoaderTrainer` with every weight layer masked (random
mask at density 0.2) and GMP's hooks (a prune event per step is not counted: events are rare).
The two loops alternate round by round (``--rounds``; both models are built once), so a change
in the machine's speed reaches both; the best round of each gives the figures, and the median of
the round pairs' ratios is printed beside. Prints both figures and
``RESULT runner_per_s=... plain_per_s=... ratio=... median_pair_ratio=...`` (expected >= 0.95).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def synthetic_loader(batch: int, size: int, classes: int, steps: int):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, batch, 3, size, size, generator=g)
    ys = torch.randint(0, classes, (steps, batch), generator=g)

    class Loader:
        batch_size = batch

        def __len__(self):
            return steps

        def __iter__(self):
            return iter(zip(xs, ys))
    return Loader()


def plain(model, loader, device, amp, channels_last):
    """A plain torchvision-style loop: returns a function that trains one pass over ``loader``
    and gives its images per second."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def one_round():
        t = time.perf_counter()
        n = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t)
    return one_round


def runner(model, loader, device, amp, channels_last):
    """The runner's trainer with every weight layer masked and GMP's hooks: as :func:`plain`."""
    from pruners.base import PruneContext, get_method
    from pruners.layers import prunable_layers
    from pruners.trainer_loader import Dist, LoaderTrainer, Recipe
    layers = prunable_layers(model)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for l in layers:
            l.module.weight_mask.copy_((torch.rand(l.module.weight_mask.shape, generator=g) < 0.2).float())
            l.zero_masked_()
    recipe = Recipe(epochs=1, lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="constant",
                    amp={torch.bfloat16: "bf16", None: "none"}[amp], channels_last=channels_last)
    tr = LoaderTrainer(model, layers, loader, recipe, dist=Dist(device=device))
    method = get_method("gmp")()
    ctx = PruneContext(model, tr, layers, [sum(int(l.mask.sum()) for l in layers)], method.config, seeds=[0],
                       method_name="gmp")

    def one_round():
        tr.train(1, after_step=lambda k: method.after_step(ctx), after_epoch=lambda *a: None)
        return tr.last_epoch["images_per_s"]
    return one_round


def main():
    import torchvision
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image-size", type=int, default=None, help="default 224 on CUDA, 64 on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 256 on CUDA, 16 on CPU")
    p.add_argument("--steps", type=int, default=None, help="steps per timed round (default 30 CUDA, 20 CPU)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per loop, alternating; the best is kept")
    a = p.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    size = a.image_size or (224 if cuda else 64)
    batch = a.batch or (256 if cuda else 16)
    steps = a.steps or (30 if cuda else 20)
    amp = torch.bfloat16 if cuda else None
    if cuda:
        torch.backends.cudnn.benchmark = True
    loader = synthetic_loader(batch, size, 1000, steps)
    rounds = {}
    for name, make in (("plain", plain), ("runner", runner)):
        torch.manual_seed(0)
        model = torchvision.models.get_model(a.arch, num_classes=1000).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        make(model, synthetic_loader(batch, size, 1000, 2), device, amp, cuda)()  # warm-up
        rounds[name] = make(model, loader, device, amp, cuda)
    # alternate the two loops round by round, so a change in the machine's speed reaches both
    res = {"plain": [], "runner": []}
    for _ in range(a.rounds):
        for name in ("plain", "runner"):
            res[name].append(rounds[name]())
    best = {k: max(v) for k, v in res.items()}
    pair = sorted(r / p for p, r in zip(res["plain"], res["runner"]))
    median = pair[len(pair) // 2] if len(pair) % 2 else 0.5 * (pair[len(pair) // 2 - 1] + pair[len(pair) // 2])
    print(f"{a.arch}, {size}x{size}, batch {batch}, {device.type}, {a.rounds} alternating rounds of {steps} steps: "
          f"plain loop {best['plain']:.1f} img/s, runner (masks + gmp hooks) {best['runner']:.1f} img/s (best rounds); "
          f"round-pair ratios {' '.join(f'{r:.3f}' for r in pair)}")
    print(f"RESULT runner_per_s={best['runner']:.2f} plain_per_s={best['plain']:.2f} "
          f"ratio={best['runner'] / best['plain']:.3f} median_pair_ratio={median:.3f}")


if __name__ == "__main__":
    main()
