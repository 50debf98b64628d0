"""cubist-audit: audit neural-network pruning against the exact sparsest models of the Cubist Spiral.

The pipeline, top to bottom: data (:func:`make_spiral`) -> masks and models (:class:`MaskedMLP`,
:mod:`cubist.masks`) -> training (:func:`train_reference`, the numba engine in ``search``, the
pruners in ``pruners``) -> result rows (:class:`ResultStore`) -> analysis and plots.
"""
__version__ = "0.1.0"

from .spiral import Dataset, SpiralRecipe, dataset_id, make_heldout, make_spiral  # noqa: E402
from .masks import bias_masks, dead_units, effective_masks, mask_counts  # noqa: E402
from .model import MaskedMLP, init_params  # noqa: E402
from .train import TrainConfig, TrainResult, epoch_permutation, evaluate, lr_at, train_reference  # noqa: E402
from .store import ResultStore, StoreWriter, make_row, row_masks, row_weights, run_id  # noqa: E402

__all__ = [
    "__version__", "Dataset", "SpiralRecipe", "dataset_id", "make_heldout", "make_spiral",
    "bias_masks", "dead_units", "effective_masks", "mask_counts", "MaskedMLP", "init_params",
    "TrainConfig", "TrainResult", "epoch_permutation", "evaluate", "lr_at", "train_reference",
    "ResultStore", "StoreWriter", "make_row", "row_masks", "row_weights", "run_id",
]
