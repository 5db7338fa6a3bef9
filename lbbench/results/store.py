"""The Parquet results store (docs/architecture.md, "Data flow").

Every table is a folder of part files, one per run named by the run's hash (lbbench.engine.identity)
or one per batch of short runs a sweep's worker ran together (`batch_part`),
that polars scans as one dataset (`pl.scan_parquet("DIR/runs/*.parquet")`). A part is written to
a temporary name in the same folder and renamed into place, so a reader or an interrupted writer
never sees half a file. One writer at a time: a sweep or `lbbench run --out` holds the folder's
lock (`FolderLock`) while it writes. Names (of scenarios, sweeps) become file names only through
`safe_name`; parts never carry one.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import polars as pl

TABLES = ("runs", "tasks", "timeseries", "histograms", "faults", "nodes", "events")
LOCK_NAME = ".lbbench.lock"
SUPERSEDED = "superseded"
_NAME_BYTES = 96


def safe_name(name: object) -> str:
    """The one mapping of a name (a sweep's, a scenario's) to a file or folder name: no path
    separators, no leading dot (so no `..`), no NUL or other control characters, at most
    96 bytes of UTF-8, never empty. A name that had to change gets a short hash of the original,
    so two different names never map to one file name."""
    text = str(name)
    out = "".join("_" if c in "/\\:" or (unicodedata.category(c)[0] in "CZ" and c != " ") else c
                  for c in unicodedata.normalize("NFC", text)).strip(" ").lstrip(".")
    if out == text and 0 < len(out.encode()) <= _NAME_BYTES:
        return out
    tag = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = out.encode()[:_NAME_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}-{tag}" if head else f"unnamed-{tag}"


_HELD: set[int] = set()      # descriptors of the folder locks this process holds


def _drop_inherited_locks() -> None:
    # A flock belongs to the open file, which a forked child (a sweep's worker) shares: the
    # child closes its copy, so that the lock ends with the process that took it, not with the
    # last of its workers.
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class FolderLock:
    """An exclusive lock on an output folder (`fcntl.flock` on DIR/.lbbench.lock), held until
    `release()` or the process ends (the OS releases it if the process dies; forked workers do
    not hold it). A second writer gets `UserError`. The lock file is removed on release; a writer
    that locked a file removed meanwhile tries again on the new one."""

    def __init__(self, folder: str | Path):
        import fcntl
        self.path = Path(folder) / LOCK_NAME
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise UserError(f"{str(folder)!r} is being written by another lbbench process; "
                                "wait until it ends or choose another --out") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        _HELD.add(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


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
    # (not named *.parquet: polars' glob, as pathlib's, matches hidden names, so a reader's
    # pl.scan_parquet("DIR/runs/*.parquet") would read a part being written, or one a killed
    # writer left)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
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


def write_run(out: Path, run_hash: str, tables: dict) -> None:
    """A run's part files (or a batch's, named by `batch_part`), the runs/ part last: the runs
    exist exactly when that part does."""
    tables = dict(tables)
    runs_df = tables.pop("runs")
    write_tables(out, run_hash, tables)
    write_tables(out, run_hash, {"runs": runs_df})


BATCH_PREFIX = "batch-"


def batch_part(run_hashes: list[str]) -> str:
    """The part name of runs written together: a single run's hash, or for several a name
    derived from all of their hashes (so that a batch part's name checks its rows)."""
    if len(run_hashes) == 1:
        return run_hashes[0]
    return BATCH_PREFIX + hashlib.sha1("\n".join(sorted(run_hashes)).encode()).hexdigest()[:20]


def part_names(out: Path) -> dict[str, list[Path]]:
    """Part name (a run's hash, or a batch's `batch_part`) -> its part files in every table
    folder under `out`."""
    parts: dict[str, list[Path]] = {}
    for table in TABLES:
        for p in sorted((out / table).glob("*.parquet")):
            if not p.name.startswith("."):
                parts.setdefault(p.stem, []).append(p)
    return parts


def set_aside(out: Path, files: list[Path]) -> Path:
    """Move part files to `out/superseded/<table>/` (a name already there gets a suffix, so
    nothing is overwritten); returns that folder."""
    dest_root = out / SUPERSEDED
    for f in files:
        dest_dir = dest_root / f.parent.name
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, i = dest_dir / f.name, 1
        while dest.exists():
            dest, i = dest_dir / f"{f.stem}.{i}{f.suffix}", i + 1
        os.replace(f, dest)
    return dest_root


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
