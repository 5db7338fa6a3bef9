"""Local worker processes of a sweep.

On Linux the workers are forked, ready to run, from a process that has imported lbbench's
compiled side and initialised numba's compiler once (`lbbench.experiments.worker_init`): a worker starts in a
fraction of a second instead of the ~2 s a fresh interpreter needs. A fork keeps only the forking
thread, and a lock that another thread held stays locked in the child, so the process forked from
must have no other thread:
- `lbbench sweep` forks the workers from itself. It loads the compiled side first (it needs
  numba to read the sweep's strategies anyway), with a single-threaded OpenBLAS (`prepare`), and
  starts the pool before it imports polars or draws the progress bar, both of which start threads.
- Any other caller (a notebook that has imported polars, numpy with its OpenBLAS threads) gets
  its workers from a fork server (multiprocessing's `forkserver`): a clean process that preloads
  the same modules.
Without fork (not Linux) the workers are spawned.

`Workers` supervises them, one pipe each: a worker that dies (a segfault, `os._exit`, the
kernel's out-of-memory killer) or runs past the time limit costs the run it was running, which
is reported as failed, and is replaced; the others go on. A worker dies with the process that
started it, and ignores Ctrl-C, which reaches the whole terminal's process group: the sweep
stops its workers itself.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from contextlib import contextmanager
from multiprocessing.connection import wait

PRELOAD = ["lbbench.experiments.worker_init"]


def single_threaded() -> bool:
    """Whether this process has one thread (counted by the kernel: polars' threads included)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


@contextmanager
def _single_threaded_blas():
    # OpenBLAS starts a thread per core when numpy loads; the engine does no linear algebra.
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def prepare() -> None:
    """Called first by a command that will start local workers (Linux): load the compiled side
    into this process, single-threaded, so that the workers can be forked from it."""
    if not sys.platform.startswith("linux") or "numpy" in sys.modules:
        return
    import importlib
    with _single_threaded_blas():
        for mod in PRELOAD:
            importlib.import_module(mod)


def context():
    """The multiprocessing context of local sweep workers, for this process as it is now."""
    if sys.platform.startswith("linux"):
        if "lbbench.experiments.worker_init" in sys.modules and single_threaded():
            return multiprocessing.get_context("fork")
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            return ctx
    return multiprocessing.get_context("spawn")


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent ends, however it ends (a SIGKILL
    included), so that no worker is left computing for a sweep that is gone. The parent is the
    sweep, or the fork server, which ends with the sweep."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))     # PR_SET_PDEATHSIG


def _serve(conn) -> None:
    """A worker: calls (fn, args) from its pipe, answering (result, None) or (None, error),
    until it reads None or its parent is gone."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, args = job
        try:
            answer = (fn(*args), None)
        except Exception as exc:
            answer = (None, f"{exc.__class__.__name__}: {exc}".splitlines()[0])
        conn.send(answer)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker died: {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker died: signal {-exitcode}"
    return f"worker died: exit code {exitcode}"


class _Worker:
    def __init__(self):
        ctx = context()
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver
            with _single_threaded_blas():
                forkserver.ensure_running()
        self.method = ctx.get_start_method()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True, name="lbbench-worker")
        self.process.start()
        child.close()
        self.key = None             # the call it is running
        self.started = 0.0

    def stop(self, kill: bool) -> None:
        if not kill and self.key is None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        self.conn.close()


class Workers:
    """`size` local worker processes, each running one call at a time (`submit`), with
    `timeout` seconds per call (None: no limit). With fork they all start here and now.

    `results()` waits for calls to end and returns them as (key, result, error) triples: error
    is None when the call returned, else the exception it raised (one line), "worker died:
    SIGSEGV" (or the exit code) or "timed out after N s"; a worker that died or timed out is
    replaced by a new one. Use as a context manager, or `close()`."""

    def __init__(self, size: int, timeout: float | None = None):
        self.timeout = timeout
        self._workers: list[_Worker] = []
        try:
            for _ in range(size):
                self._workers.append(_Worker())
        except BaseException:
            self.close(kill=True)
            raise

    @property
    def method(self) -> str:
        """How the workers were started: fork, forkserver or spawn."""
        return self._workers[0].method

    @property
    def size(self) -> int:
        return len(self._workers)

    @property
    def idle(self) -> int:
        return sum(w.key is None for w in self._workers)

    def submit(self, key, fn, *args) -> None:
        """fn(*args) on an idle worker (there must be one); `key` names it in `results()`."""
        i, w = next((i, w) for i, w in enumerate(self._workers) if w.key is None)
        try:
            w.conn.send((fn, args))
        except OSError:                             # it died while idle
            w.stop(kill=True)
            w = self._workers[i] = _Worker()
            w.conn.send((fn, args))
        w.key, w.started = key, time.monotonic()

    def results(self) -> list[tuple]:
        """The calls that ended, at least one (none if none is running)."""
        while True:
            busy = [w for w in self._workers if w.key is not None]
            if not busy:
                return []
            # woken ten times a second at least: a signal that another of this process's
            # threads took has its handler run when this thread runs Python
            timeout = 0.1
            if self.timeout is not None:
                timeout = min(timeout, max(0.0, min(w.started for w in busy) + self.timeout - time.monotonic()))
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
            now = time.monotonic()
            ended = []
            for w in busy:
                error = None
                if w.conn in ready:
                    try:
                        result, error = w.conn.recv()
                    except (EOFError, OSError):     # died before it answered
                        result, error = None, self._replace(w, None)
                elif w.process.sentinel in ready:
                    result, error = None, self._replace(w, None)
                elif self.timeout is not None and now - w.started >= self.timeout:
                    result, error = None, self._replace(w, f"timed out after {self.timeout:g} s")
                else:
                    continue
                ended.append((w.key, result, error))
                w.key = None
            if ended:
                return ended

    def _replace(self, w: _Worker, why: str | None) -> str:
        """Stop a worker that died or ran too long, start another in its place; returns why."""
        w.stop(kill=True)
        self._workers[self._workers.index(w)] = _Worker()
        return why or _death(w.process.exitcode)

    def close(self, kill: bool = False) -> None:
        """Stop every worker: idle ones are told to leave; busy ones, or all with `kill`, are
        killed at once."""
        for w in self._workers:
            w.stop(kill)
        self._workers = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(kill=exc_type is not None)
