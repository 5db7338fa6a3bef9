"""numba's disk cache, stamped with the whole package's source (docs/architecture.md, "Layers
and the import rule"; benchmarks/README.md, "Compile time").

numba stamps a cached function with its own file's modification time and size. A function that
links code from another file (a control handler compiled apart calls `_give_up` in
requests.py; `refresh_step` calls the load index) would be loaded from the cache with the other
file's old code after that file alone changed, as an editable install updated by `git pull`
does. Every function lbbench caches is also stamped with a hash of all of lbbench's sources
(`SOURCE_HASH`), so a change anywhere in the package compiles them again, as the specialised
kernels' cache names already did (specialise.engine_hash). Every module that caches a function
calls `install()` before its first `njit(cache=True)` (tests/test_layers.py checks it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import caching

PACKAGE = Path(__file__).resolve().parent


def package_hash(root: Path = PACKAGE) -> str:
    """sha1 of every .py file under `root` (paths and contents), 16 hex digits."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


SOURCE_HASH = package_hash()


def _ours(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


class Stamped:
    """A numba cache locator for lbbench's own files: numba's, with the package's hash added to
    the source stamp that numba compares with the one stored beside the cached code."""

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if _ours(py_file) else None

    def get_source_stamp(self):
        return (super().get_source_stamp(), SOURCE_HASH)


_LOCATORS = [type(f"Stamped{base.__name__}", (Stamped, base), {})
             for base in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator)]


def install() -> None:
    """Put the stamped locators first in numba's list (once)."""
    found = caching.CacheImpl._locator_classes
    if not any(isinstance(c, type) and issubclass(c, Stamped) for c in found):
        found[:0] = _LOCATORS
