"""Exact order statistics of score shards in memory flat in the number of rows.

:class:`OrderStats` counts valid rows per group and finds exact quantiles (DuckDB's
``quantile_cont``, bit for bit) and the full sort keys at given ranks, streaming the shards in a
few passes (see :mod:`datafilter.order_stats.engine`).
"""

from datafilter.order_stats.engine import OrderStats, PassInfo
from datafilter.order_stats.scan import ScoreShards

__all__ = ["OrderStats", "PassInfo", "ScoreShards"]
