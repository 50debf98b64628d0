"""The report floor: tables (pure functions of a DataFrame of result rows), masks up to hidden-unit
symmetry, plots and the audit. It reads the core (rows, masks, models) and the search's canonical
mask form; the command line (``cubist.cli``) sits above it.

- :mod:`cubist.report.tables`: :func:`load_results` (every row once, normalised once) and the
  audit's tables;
- :mod:`cubist.report.symmetry`: shared weights and orbits of masks under hidden-unit permutations;
- :mod:`cubist.report.plots`: matplotlib figures (imported lazily);
- :mod:`cubist.report.audit`: ``report.md``/``report.html`` with the figures.
"""
from .tables import ResultsError, load_results

__all__ = ["ResultsError", "load_results"]
