"""Uncertainty over seeds: mean, standard deviation and a bootstrap confidence interval.

Seeds are runs (rliable's view): a cell's value is summarised by the mean over its seeds, the sample
standard deviation (``ddof=1``) and a percentile bootstrap interval of the mean, resampling the seeds
with replacement under an explicit random state (``scipy.stats.bootstrap``), so the same records always
give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: bootstrap resamples for the interval of the mean over seeds
N_RESAMPLES = 10_000
#: confidence level of the interval
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Summary of one cell's values over seeds. With one seed ``std`` and the interval are NaN; when every
    seed gave the same value the interval is that value."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


def summarise(values: np.ndarray | list[float], *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
              random_state: int = 0) -> Summary:
    """Mean, sample std and the percentile-bootstrap ``confidence`` interval of the mean over seeds.

    Args:
        values: one value per seed (NaN values are dropped).
        confidence: coverage of the interval (0.95 for a 95 % interval).
        n_resamples: bootstrap resamples.
        random_state: seeds the resampling, so intervals are reproducible.
    Returns:
        :class:`Summary`; all NaN (``n = 0``) when there is no value.
    Raises:
        ValueError: ``confidence`` outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Summary(np.nan, np.nan, 0, np.nan, np.nan)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else np.nan
    if n == 1:
        return Summary(mean, np.nan, 1, np.nan, np.nan)
    if np.all(x == x[0]):
        return Summary(mean, 0.0, n, mean, mean)
    from scipy.stats import bootstrap  # deferred: SciPy costs a second at every start of the command line

    result = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                       random_state=np.random.RandomState(random_state), vectorized=True)
    ci = result.confidence_interval
    return Summary(mean, std, n, float(ci.low), float(ci.high))
