"""The LRU capacity curve from a spatial sample of the cache units (SHARDS: Waldspurger et al., FAST '15), for a
timeline too large to pass whole.

A unit is kept when the low 24 bits of its mixed id fall below ``rate * 2**24``: a unit is either always in the
sample or never, so the sample holds every reuse of the units it holds, and a sampled unit stands for 1/rate units
in a stack distance and in the estimate. A capacity of K hits an access whose estimated depth (the weights of the
distinct units touched since its last touch) is at most K; a request's leading-prefix rule is applied to its kept
units (the running max of their depths, as ``capacity`` does for all of them). The curve point is the kept hit
tokens over the kept tokens, each weighted (a ratio estimate: the sample's own size cancels out).

Agent traffic leans on a few hot units (every request starts with one of a few hundred system prompts), and a
sample that misses or catches one of them swings the estimate (at rate 0.01 on Mooncake-shape traffic, by 0.4).
So the hottest units, as many as the sample holds units, are kept whole with weight 1 (SHARDS' sampling of the
rest is unchanged); their accesses can be a large share of all, which the result reports (``sampled_accesses``).

The error bound beside each point is read off the sample: ``Z`` standard errors of the ratio (each sampled unit a
cluster of its accesses, in with probability ``rate``), plus half the share of kept tokens whose estimated depth
is within one standard deviation of the capacity (a depth's sampled part is binomial: those tokens are the ones a
different sample could move across it). ``tests/test_shards.py`` checks it against the exact curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from zumik_cli.analysis import capacity
from zumik_cli.core.errors import ZumikError

SPACE = 1 << 24  # the hash space the rate is a share of
Z = 3.0  # standard errors in the bound


@dataclass(frozen=True)
class SampledCurve:
    """Curve points as ``(capacity_tokens, rate)``, with the sampling rate and the largest error bound."""

    points: list[tuple[int | None, float]]
    bounds: list[float]
    rate: float
    sampled_accesses: int
    accesses: int

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "SHARDS: spatially hashed sample of cache units, stack distances scaled by 1/rate",
            "rate": self.rate,
            "error_bound": round(max(self.bounds, default=0.0), 6),
            "point_bounds": [round(b, 6) for b in self.bounds],
            "sampled_accesses": self.sampled_accesses,
            "accesses": self.accesses,
            "bound": f"{Z:g} standard errors of the sampled ratio, plus half the share of kept tokens whose estimated "
            "depth is within one standard deviation of the capacity",
        }


def spatial_hash(keys: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: any unit key (a chain hash, a block number) to 64 well-mixed bits."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sampled(keys: npt.NDArray[np.integer], rate: float) -> npt.NDArray[np.bool_]:
    """Which accesses belong to sampled units: the mixed key's low 24 bits below ``rate * 2**24``."""
    threshold = np.uint64(round(rate * SPACE))
    return (spatial_hash(keys) & np.uint64(SPACE - 1)) < threshold


def sampled_curve(
    offsets: npt.NDArray[np.int64],
    units: npt.NDArray[np.integer],
    sizes: npt.NDArray[np.integer],
    capacities: list[int | None],
    rate: float,
    unit_tokens: int | None,
) -> SampledCurve:
    """The curve of a time-ordered workload (CSR ``offsets``; per access its unit and tokens) from the units whose
    hashed id is sampled at ``rate``, plus the hottest units whole. ``unit_tokens``: one block size (capacity counts
    whole blocks), or None (capacity counts tokens, depths are token depths)."""
    if not 0 < rate <= 1:
        raise ZumikError(f"a sampling rate is a share above 0 and at most 1, not {rate:g}")
    units = np.asarray(units).astype(np.int64)
    ids, dense_all, uses = np.unique(units, return_inverse=True, return_counts=True)
    dense_all = dense_all.reshape(-1)
    hot_units = _hottest(uses, rate)
    hot = hot_units[dense_all]
    keep = hot | sampled(units, rate)
    # every request of a workload has blocks (``levels.Workload``), so no two offsets are equal
    counts = np.add.reduceat(keep.astype(np.int64), offsets[:-1]) if len(keep) else np.zeros(0, dtype=np.int64)
    kept_offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
    kept_units = units[keep]
    kept_sizes = np.asarray(sizes)[keep].astype(np.int64)
    kept_hot = hot[keep]
    if not len(kept_units):
        return SampledCurve([(c, 0.0) for c in capacities], [1.0 for _ in capacities], rate, 0, int(len(units)))
    # a sampled unit stands for 1/rate units: its weight in a depth (and in the estimate) is 1/rate, a hot one's 1
    weight = np.where(kept_hot, 1.0, 1.0 / rate)
    scaled_weight = np.rint(weight * WEIGHT_SCALE).astype(np.int64)
    depth_sizes = scaled_weight if unit_tokens else scaled_weight * kept_sizes
    depths = capacity.lru_prefix_token_depths(kept_offsets, kept_units, depth_sizes).astype(np.float64)
    seen = depths < float(capacity.FIRST_ACCESS)
    depths /= WEIGHT_SCALE
    tokens = kept_sizes * weight
    total = float(tokens.sum())
    dense = dense_all[keep]
    cold = ~kept_hot
    unit_total = np.bincount(dense[cold], weights=kept_sizes[cold], minlength=len(ids))
    points, bounds = [], []
    for cap in capacities:
        hit = seen if cap is None else seen & (depths <= (cap // unit_tokens if unit_tokens else cap))
        ratio = float(tokens[hit].sum()) / total
        # the sampling error: each sampled unit a cluster of its accesses, in with probability ``rate``
        unit_hits = np.bincount(dense[cold & hit], weights=kept_sizes[cold & hit], minlength=len(ids))
        residual = float(((unit_hits - ratio * unit_total) ** 2).sum()) / rate
        standard_error = math.sqrt((1 - rate) / rate * residual) / total
        points.append((cap, ratio))
        # a depth is an estimate too (its sampled part binomial): the tokens it could move across the capacity
        band = 0.0
        if cap is not None:
            limit = cap // unit_tokens if unit_tokens else cap
            spread = math.sqrt(limit * (1 - rate) / rate * (1 if unit_tokens else float(kept_sizes.max())))
            band = float(tokens[seen & (np.abs(depths - limit) <= spread)].sum()) / total / 2
        bounds.append(Z * standard_error + band)
    return SampledCurve(points, bounds, rate, int(len(kept_units)), int(len(units)))


WEIGHT_SCALE = 1 << 10  # weights are integers in the depth pass: 1/rate to three decimals


def _hottest(uses: npt.NDArray[np.int64], rate: float) -> npt.NDArray[np.bool_]:
    """The units every estimate leans on (shared system prompts), taken whole: as many as the sample holds units
    (``rate`` of them), the most used first, and only those used more than 1/rate times, whose sampling would cost
    most. Their accesses can be a large share of all (every request starts with one of a few prefixes)."""
    hot = np.zeros(len(uses), dtype=bool)
    budget = math.ceil(rate * len(uses))
    if rate >= 1 or budget == 0:
        return hot
    order = np.argsort(-uses, kind="stable")[:budget]
    hot[order[uses[order] > 1 / rate]] = True
    return hot
