"""The Parquet results store (DESIGN section 4).

Every table is a folder of part files, one per run, that polars scans as one dataset
(`pl.scan_parquet("DIR/runs/*.parquet")`). A part is written to a temporary name in the same
folder and renamed into place, so a reader or an interrupted writer never sees half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import polars as pl

TABLES = ("runs", "tasks", "timeseries", "histograms", "faults")


def prepare_out(out: str | Path) -> Path:
    """Create the output folder (or check it is writable) before any work is done."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UserError(f"--out {str(p)!r} is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=p, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"--out {str(p)!r} cannot be written ({exc.strerror or exc}); choose another folder") from None
    return p


def write_atomic(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_tables(out: Path, part: str, tables: dict[str, pl.DataFrame]) -> dict[str, Path]:
    """Write each table's part file `out/<table>/<part>.parquet`; returns the paths."""
    paths = {}
    for name, df in tables.items():
        if df is None:
            continue
        path = out / name / f"{part}.parquet"
        write_atomic(df, path)
        paths[name] = path
    return paths


def remove_parts(out: Path, part: str) -> None:
    """Remove a part's file from every table (what a writer that died may have left)."""
    for name in TABLES:
        (out / name / f"{part}.parquet").unlink(missing_ok=True)


def scan(out: str | Path, table: str = "runs") -> pl.LazyFrame:
    p = Path(out) / table
    if not p.is_dir() or not any(p.glob("*.parquet")):
        raise UserError(f"no {table} results under {str(out)!r}; run a sweep or `lbbench run --out {out}` first")
    import polars as pl
    return pl.scan_parquet(str(p / "*.parquet"))


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def clean_temporaries(out: Path) -> int:
    """Remove temporary files an interrupted writer left behind; returns how many."""
    n = 0
    for p in out.rglob(".tmp-*"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n
