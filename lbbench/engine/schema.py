"""The runs table's columns and their types (README, "Summary columns"): what `simulate`
writes, what a failed run's row carries, and what `analysis.load` requires of a part."""
from __future__ import annotations

import polars as pl

_I, _F, _S = pl.Int64, pl.Float64, pl.String
# The runs table's columns, in order, with their types (a failed run has the same columns).
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "run_id": _S, "scenario": _S, "strategy": _S, "strategy_version": _S, "strategy_hash": _S,
    "params": _S, "seed": _I, "nodes": _I, "tasks": _I, "workers": _I, "rho": _F, "rate": _F, "users": _I, "sessions": _I,
    "mode": _S, "info": _S, "hop": _F, "requests": _I, "arrived": _I, "completed": _I,
    "rejected": _I, "failed": _I, "in_flight": _I, "retried": _I, "timed_out": _I, "availability": _F,
    "faults": _I, "crashes": _I, "recovery_s": _F, "update_s": _F, "latency_mean": _F, "latency_p50": _F,
    "latency_p90": _F, "latency_p99": _F, "latency_p999": _F, "latency_max": _F,
    "throughput": _F, "offered_rate_mean": _F, "util_mean": _F, "util_max": _F, "imbalance_cov": _F,
    "imbalance_max_mean": _F, "jain": _F, "cross_node_frac": _F, "cpu_util_mean": _F, "cpu_util_max": _F, "contention_mean": _F,
    "stable": pl.Boolean, "sim_time": _F,
    "wall_s": _F, "req_per_s": _F, "lbbench_version": _S, "schema_version": _I,
}
TIMING_COLUMNS = ("wall_s", "req_per_s")
