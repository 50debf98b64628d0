"""Saved initialisations for the fixed-init experiments (``--init-checkpoint FILE``).

Zhang & Papyan (ICML 2024, §3 of ALGORITHMS.md) rerun their search and the pruners "given the
optimal width and initialization": one saved width-16 init for every run, sub-networks its
top-left blocks (``W1[:d1, :]``, ``W2[:d2, :d1]``, ``W3[:d3, :d2]``, ``clf[:, :d3]``). A
checkpoint is a ``torch.save`` dict ``{"params": [(W, b), ...], "widths": [...], "seed": s,
"id": ..., "source": {...}}`` of float32 tensors; only ``params`` is required.

Its id is a content hash of the parameters (:func:`init_id`), so a row that records
``init = "checkpoint:<id>"`` names exactly one init, wherever the file lies; the same init
saved twice has one id. ``source`` says where an init came from (``cubist search best-init``:
the store, the run id and the init seed of the run whose init it is); it is not part of the id.

The core of the fixed-init experiments, shared by the search (``search.phases``) and the
pruners (``pruners.runner``); it imports nothing above :mod:`cubist.model`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from .store import write_atomically


def init_id(params) -> str:
    """The id of an init: the first 16 hex digits of the sha256 of its float32 W, b bytes, layer by layer."""
    h = hashlib.sha256()
    for w, b in params:
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


@dataclass
class FixedInit:
    """A saved initialisation (e.g. of the width-16 network) shared by every run.

    ``weights``: ``[(W, b), ...]`` float32 numpy arrays, at least as wide as the widths trained
    from it; :meth:`sliced` cuts the top-left blocks of given widths. ``id``: :func:`init_id`.
    ``source``: where it came from (may be empty)."""

    weights: list
    id: str
    source: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> "FixedInit":
        """Read a checkpoint; an unreadable file or another kind of file is a ``ValueError``."""
        import torch
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"cannot read init checkpoint {path}: {first}") from None
        try:
            weights = [(np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32)) for w, b in obj["params"]]
            if not weights or any(w.ndim != 2 or b.ndim != 1 or w.shape[0] != b.shape[0] for w, b in weights):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path} is not an init checkpoint (expected {{'params': [(W, b), ...]}})") from None
        ident = init_id(weights)
        if obj.get("id") not in (None, ident):
            raise ValueError(f"init checkpoint {path} is damaged: it records id {obj['id']}, its parameters "
                             f"hash to {ident}")
        return cls(weights, ident, dict(obj.get("source") or {}))

    @property
    def widths(self) -> tuple[int, ...]:
        """All layer sizes of the saved network, input to output."""
        return (self.weights[0][0].shape[1], *(w.shape[0] for w, _ in self.weights))

    def sliced(self, widths) -> list:
        """The top-left blocks ``[(W[:out, :in], b[:out]), ...]`` for ``widths`` (views)."""
        if len(self.weights) != len(widths) - 1:
            raise ValueError(f"init checkpoint has {len(self.weights)} layers, widths {tuple(widths)} "
                             f"need {len(widths) - 1}")
        out = []
        for l, (w, b) in enumerate(self.weights):
            if w.shape[0] < widths[l + 1] or w.shape[1] < widths[l]:
                raise ValueError(f"init checkpoint layer {l} {w.shape} is narrower than widths {tuple(widths)}")
            out.append((w[: widths[l + 1], : widths[l]], b[: widths[l + 1]]))
        return out


def save_checkpoint(path: str, params, *, widths=None, seed: int | None = None, source: dict | None = None) -> str:
    """Write ``params`` (``[(W, b), ...]``) as an init checkpoint, atomically; returns its id."""
    import torch
    params = [(torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32)),
               torch.as_tensor(np.ascontiguousarray(b, dtype=np.float32))) for w, b in params]
    ident = init_id([(w.numpy(), b.numpy()) for w, b in params])
    widths = list(widths) if widths is not None else [int(params[0][0].shape[1]), *(int(w.shape[0]) for w, _ in params)]
    obj = {"widths": [int(v) for v in widths], "seed": seed, "params": params, "id": ident,
           "source": dict(source or {})}
    write_atomically(os.fspath(path), lambda tmp: torch.save(obj, tmp))
    return ident


def save_init(path: str, widths=(2, 16, 16, 16, 1), seed: int = 0, init_width: int | None = 16,
              source: dict | None = None) -> str:
    """Save the default init of ``widths`` drawn from ``seed`` (:func:`cubist.model.init_weights`)
    for ``--init-checkpoint``; returns its id."""
    from . import model   # looked up at call time (tests fence init_weights off)
    weights = model.init_weights(widths, init_width, seed)
    return save_checkpoint(path, weights, widths=widths, seed=seed, source=source)


__all__ = ["FixedInit", "init_id", "save_checkpoint", "save_init"]
