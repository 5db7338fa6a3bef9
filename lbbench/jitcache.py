"""numba's disk cache, stamped with the source of everything lbbench compiles (docs/architecture.md,
"Layers and the import rule").

numba stamps a cached function with its own file's modification time and size. A function that
links code from another file (a control handler compiled apart calls `_give_up` in
requests.py; `refresh_step` calls the load index) would be loaded from the cache with the other
file's old code after that file alone changed, as an editable install updated by `git pull`
does. Every function lbbench caches is also stamped with `SOURCE_HASH`, a hash of the files
compiled code is made of (`COMPILED`), so a change in any of them compiles them all again; the
specialised kernels' cache names carry it too (specialise.engine_hash). Importing this module
installs the stamp: every module that caches a function imports it before its first
`njit(cache=True)` (tests/test_layers.py checks it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import caching

PACKAGE = Path(__file__).resolve().parent


# What compiled code is made of: the engine, and what it and the plugins compile in (the random
# streams, the fault and deployment codes, the strategy kit, the time-varying arrivals).
COMPILED = ("engine/*.py", "rng.py", "model/faults.py", "model/deploy.py", "model/profile.py", "plugins/kit.py")


def source_hash(root: Path = PACKAGE) -> str:
    """sha1 of the `COMPILED` files under `root` (names and contents), 16 hex digits."""
    h = hashlib.sha1()
    for p in sorted(p for pattern in COMPILED for p in root.glob(pattern)):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


SOURCE_HASH = source_hash()


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


install()
