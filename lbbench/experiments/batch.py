"""A sweep's tables, one frame per table for all the runs a worker ran together
(docs/architecture.md, "Data flow").

A short run's fixed cost is mostly polars: a frame per table and run, and the columns added to
each (the run's hash, the sweep's axes), each a query of its own. Here each run leaves its
tables as plain columns (`lbbench.engine.run.Parts`): consecutive runs whose columns agree (the
same names, dtypes and shapes) are concatenated with numpy and made into one frame, and the
frames of runs that differ, or of the rarer tables a run builds as frames (faults, events,
nodes), are joined as the runs' own frames always were (`pl.concat(..., how="diagonal_relaxed")`).
A table is row for row what the runs' frames made one by one and concatenated give; a run alone
(`execute`) goes through the same code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import polars as pl

    from ..engine.run import Parts


class Columns:
    """One run's columns of a table, made into a frame by `make` (with those of other runs of
    the same `signature`, concatenated)."""

    __slots__ = ("cols", "make", "signature")

    def __init__(self, cols: dict, make: Callable[[dict], pl.DataFrame]):
        self.cols, self.make = cols, make
        self.signature = (make, tuple((k, _kind(v)) for k, v in cols.items()))


class Rows:
    """One run's row of the runs table and the columns added to it, each with the dtype polars
    gives its value as a literal (`pl.lit`)."""

    __slots__ = ("row", "added", "signature")

    def __init__(self, row: dict, added: dict[str, tuple[Any, Any]]):
        self.row, self.added = row, added
        self.signature = (Rows, tuple((k, dt) for k, (_, dt) in added.items()))


def _kind(v) -> tuple:
    if isinstance(v, np.ndarray):
        return "a", v.dtype.str, v.shape[1:]
    if isinstance(v, list):
        return "l", type(v[0])
    return "s", v.dtype          # a polars Series


_LIT_DTYPES: dict = {}


def lit_dtype(value):
    """The dtype of `pl.lit(value)` (kept per value: a grid's axes take few)."""
    key = (type(value), value)
    dt = _LIT_DTYPES.get(key)
    if dt is None:
        import polars as pl
        dt = pl.select(pl.lit(value)).to_series().dtype
        if len(_LIT_DTYPES) < 100_000:
            _LIT_DTYPES[key] = dt
    return dt


def run_pieces(parts: Parts, run_hash: str, added: dict[str, tuple[Any, Any]]) -> dict:
    """A run's pieces per table: its runs row with the `added` columns (name -> (value, dtype)),
    and every other table with a `run_hash` column."""
    import polars as pl

    from ..engine.run import histogram_columns, timeseries_frame

    pieces: dict = {"runs": Rows(parts.row, added)}
    for name, cols, make in (("tasks", parts.tasks, pl.DataFrame),
                             ("histograms", histogram_columns(parts.row["run_id"], parts.hist_counts), pl.DataFrame),
                             ("timeseries", parts.timeseries, timeseries_frame)):
        if cols is None:
            continue
        n = len(cols["run_id"])
        if n:
            pieces[name] = Columns({**cols, "run_hash": [run_hash] * n}, make)
        else:       # no rows: the frame's own dtypes, as a run alone has them
            pieces[name] = make(cols).with_columns(run_hash=pl.lit(run_hash))
    for name, df in (("faults", parts.faults), ("nodes", parts.nodes), ("events", parts.events)):
        if df is not None:
            pieces[name] = df.with_columns(run_hash=pl.lit(run_hash))
    return pieces


def _frame(group: list) -> pl.DataFrame:
    import polars as pl

    from ..engine.run import summary_frame
    first = group[0]
    if isinstance(first, Rows):
        df = summary_frame([p.row for p in group])
        return df.with_columns(**{k: pl.Series(k, [p.added[k][0] for p in group], dtype=dt)
                                  for k, (_, dt) in first.added.items()})
    cols = {}
    for k, v in first.cols.items():
        if len(group) == 1:
            cols[k] = v
        elif isinstance(v, np.ndarray):
            cols[k] = np.concatenate([p.cols[k] for p in group])
        elif isinstance(v, list):
            cols[k] = [x for p in group for x in p.cols[k]]
        else:
            cols[k] = pl.concat([p.cols[k] for p in group])
    return first.make(cols)


def tables(pieces: list[dict]) -> dict[str, pl.DataFrame]:
    """The tables of runs' pieces (`run_pieces`, or a failed run's frames), in the runs' order."""
    import polars as pl

    names: list[str] = []
    for p in pieces:
        names += [n for n in p if n not in names]
    out = {}
    for name in names:
        frames, group = [], []
        for p in pieces:
            piece = p.get(name)
            if piece is None:
                continue
            if group and (isinstance(piece, pl.DataFrame) or piece.signature != group[0].signature):
                frames.append(_frame(group))
                group = []
            if isinstance(piece, pl.DataFrame):
                frames.append(piece)
            else:
                group.append(piece)
        if group:
            frames.append(_frame(group))
        out[name] = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return out
