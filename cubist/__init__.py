"""cubist-audit: audit neural-network pruning against the exact sparsest models of the Cubist Spiral.

The pipeline, top to bottom: data (the registry :mod:`cubist.data`; :func:`make_spiral`) -> masks and models (:class:`MaskedMLP`,
:mod:`cubist.masks`) -> training (:func:`train_reference`, the numba engine in ``search``, the
pruners in ``pruners``) -> result rows (:class:`ResultStore`) -> analysis and plots.

Names are imported on first use, so ``cubist --version`` and the data tools do not load torch.
"""
import importlib

from .version import __version__

_EXPORTS = {
    "spiral": ("SpiralRecipe", "make_heldout", "make_spiral"),
    "data": ("DATASETS", "DataConfig", "DataSpec", "Dataset", "dataset_id", "register_dataset"),
    "stats": ("reached_target", "wilson_interval"),
    "masks": ("bias_masks", "dead_units", "effective_masks", "mask_counts"),
    "model": ("MaskedMLP", "init_weights", "run_init_seed"),
    "train": ("TrainConfig", "TrainResult", "epoch_permutation", "evaluate", "lr_at", "train_reference"),
    "store": ("ResultStore", "StoreWriter", "make_row", "row_masks", "row_weights", "run_id"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["__version__", *_WHERE]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cubist' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
