"""The vector width the numba engine is compiled for, chosen once per process before numba compiles.

The engine's loops run over the 128 samples of a batch; LLVM vectorises them. On CPUs with
AVX-512 LLVM's tuning for most Intel cores (``prefer-256-bit``) still emits 256-bit vectors;
turning that tuning off gives 512-bit vectors, which trains the spiral's masks about 1.25x faster
on this project's machine (``bench/search_throughput.py`` prints both). The environment variable
``CUBIST_SIMD`` chooses, for every process that imports :mod:`search` (Dask and Ray workers too):

- ``auto`` (the default): 512-bit vectors when the host has AVX-512F, LLVM's default otherwise;
- ``512``: 512-bit vectors (an error on a host without AVX-512F);
- ``256``: LLVM's default tuning: the engine as compiled before this option existed, bit for
  bit (256-bit vectors on AVX2 and AVX-512 hosts alike).

The width changes the order of the float32 sums over a batch (the engine reassociates them), so
rows trained at two widths agree to float32 rounding, not bit for bit; a single chaotic run's
verdict may differ. Every result row records it in its ``engine`` column (:func:`engine_label`:
``numba`` for the default tuning, ``numba-avx512`` for 512-bit vectors); a row is redrawn bit for
bit at the same width. ``NUMBA_CPU_FEATURES``, when set, is numba's own switch and wins (the
label then reads ``numba-features``).

The CPU model matters too: LLVM's cost model for the host (how many accumulators a reduction
interleaves, say) differs between models, so rows made on an Intel Xeon and an AMD EPYC agree to
float32 rounding, not bit for bit (measured: final losses 1e-7 to 4e-6 apart). The label ends in
the model numba compiles for (``NUMBA_CPU_NAME``, else the host's as LLVM names it), e.g.
``numba/znver3`` or ``numba-avx512/emeraldrapids``: a row is redrawn bit for bit with the same
label. Rows made before the model was recorded read ``numba`` or ``numba-avx512`` alone.
"""
from __future__ import annotations

import os

CHOICES = ("auto", "256", "512")
_OFF = "-prefer-256-bit"
_state: dict = {}


def _host_features() -> str:
    import llvmlite.binding as ll
    try:
        ll.initialize_native_target()
    except Exception:  # already initialised
        pass
    return ll.get_host_cpu_features().flatten()


def configure() -> str:
    """Set numba's target features for this process from ``CUBIST_SIMD`` (once); returns the label.

    Must run before numba compiles or loads any function of this process (``search`` imports it
    first). ``ValueError`` for a value outside :data:`CHOICES` or ``512`` without AVX-512F.
    """
    if "label" in _state:
        return _state["label"]
    want = os.environ.get("CUBIST_SIMD", "auto").strip().lower() or "auto"
    if want not in CHOICES:
        raise ValueError(f"CUBIST_SIMD must be one of {', '.join(CHOICES)}, got {want!r}")
    import numba
    from numba.core.registry import cpu_target
    if os.environ.get("NUMBA_CPU_FEATURES"):
        _state["label"] = "numba-features"
        return _state["label"]
    features = _host_features()
    avx512 = "+avx512f" in features.split(",")
    if want == "512" and not avx512:
        raise ValueError("CUBIST_SIMD=512 needs a CPU with AVX-512F; this one has none (use auto or 256)")
    if "_toplevel_target_context" not in cpu_target.__dict__:  # numba has compiled nothing yet
        numba.config.CPU_FEATURES = features + "," + _OFF if want != "256" and avx512 else None
    # the label says what numba's codegen uses (also when something compiled before this ran)
    _state["label"] = "numba-avx512" if _OFF in compiled_features().split(",") else "numba"
    return _state["label"]


def cpu_name() -> str:
    """The CPU model numba compiles for: ``NUMBA_CPU_NAME`` when set, else the host's (LLVM's name)."""
    import numba
    if numba.config.CPU_NAME:
        return str(numba.config.CPU_NAME)
    import llvmlite.binding as ll
    _host_features()   # initialises the native target
    return ll.get_host_cpu_name()


def engine_label() -> str:
    """The ``engine`` column of the rows this process trains: the width label of :func:`configure`
    and the CPU model, ``"<width>/<cpu>"`` (see the module docstring)."""
    if "engine" not in _state:   # asked for every chunk: the host's CPU queried once
        _state["engine"] = f"{configure()}/{cpu_name()}"
    return _state["engine"]


def compiled_features() -> str:
    """The target features numba's CPU codegen of this process actually uses (initialises it)."""
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()._tm_features
