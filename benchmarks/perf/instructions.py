"""Instructions per simulated request in the dispatch kernel: a figure that does not drift.

    python benchmarks/perf/instructions.py [STRATEGY] [--requests N] [--scenario NAME] [--set KEY=VALUE ...]

On a shared machine the wall-clock figures drift by up to 30% from one minute to the next;
the number of machine instructions the compiled kernel executes per request does not. This
runs one simulation under valgrind's callgrind (instruction counts per address; valgrind must
be installed, and numba compiles the kernel again for valgrind's virtual CPU, so expect a few
minutes), then sums the counts that fall inside the kernel's machine code and divides by the
number of requests simulated. The plugin's `select` is inlined into the kernel, so it is
counted; numpy's arrival generation is not. `--generic` compiles for a generic x86-64 CPU in a
native run first and counts that code under valgrind, loaded from numba's cache: a run with
faults takes minutes instead of some forty (valgrind's compile of the control code).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

WARM = 10_000


def child(strategy: str, scenario: str, n: int, info_path: str, sets: list[str]) -> None:
    """Under valgrind: simulate, then report where the kernel's code lies."""
    from lbbench import simulate
    from lbbench.engine import specialise as S
    from lbbench.model.scenario import parse_override

    over = dict(parse_override(t) for t in sets)
    simulate(scenario, strategy, overrides={**over, "run.requests": WARM}, progress=False)
    simulate(scenario, strategy, overrides={**over, "run.requests": n, "run.warmup": 0.0}, progress=False,
             prefetch=False)
    ranges = []
    for kernel in S._COMPILED.values():
        for cres in kernel.dispatcher.overloads.values():
            start = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            end = start + (1 << 16)
            with open("/proc/self/maps") as maps:       # the code ends with its mapping, at the latest
                for line in maps:
                    a, b = (int(x, 16) for x in line.split()[0].split("-"))
                    if a <= start < b:
                        end = min(end, b)
            ranges.append((start, end))
    with open(info_path, "w") as f:
        json.dump({"ranges": ranges, "requests": n + WARM}, f)


def kernel_instructions(callgrind_out: str, ranges) -> int:
    """Sum of the self cost (Ir) of the instructions at addresses inside `ranges`."""
    total = 0
    last = 0
    skip_next = False
    with open(callgrind_out) as f:
        for line in f:
            c = line[:1]
            if line.startswith("calls="):
                skip_next = True        # the next cost line is a call's inclusive cost
                continue
            if not c or c not in "0123456789+-*":
                continue
            parts = line.split()
            a = parts[0]
            if a.startswith("0x"):
                addr = int(a, 16)
            elif c == "+":
                addr = last + int(a[1:])
            elif c == "-":
                addr = last - int(a[1:])
            else:
                addr = last
            last = addr
            if skip_next:
                skip_next = False
                continue
            if len(parts) >= 3 and any(lo <= addr < hi for lo, hi in ranges):
                total += int(parts[2])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("strategy", nargs="?", default="round_robin")
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--scenario", default="reference")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a scenario override, as `lbbench run --set` takes it (repeatable)")
    ap.add_argument("--generic", action="store_true",
                    help="compile for a generic x86-64 CPU, natively first, so that the run under valgrind "
                         "loads the compiled code from numba's cache (minutes, not tens of minutes); its counts "
                         "are of that code, not the host CPU's: compare them with --generic counts only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.strategy, a.scenario, a.requests, a.child, a.set)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt install valgrind)")
    from lbbench.errors import UserError
    from lbbench.model.scenario import load_scenario
    from lbbench.plugins.strategy import resolve
    try:        # a bad strategy, scenario or override: one line now, not after valgrind's start
        resolve(a.strategy)
        load_scenario(a.scenario, list(a.set))
    except UserError as e:
        print(f"instructions.py: {e}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory() as tmp:
        info, out = os.path.join(tmp, "kernel.json"), os.path.join(tmp, "callgrind.out")
        run = [sys.executable, __file__, a.strategy, "--requests", str(a.requests), "--scenario", a.scenario,
               "--child", info] + [x for t in a.set for x in ("--set", t)]
        env = dict(os.environ)
        if a.generic:
            # numba keys its disk cache by the CPU's name and features: the same generic ones in both
            # runs, and a cache of their own (the host's cache holds the host CPU's code)
            env.update(NUMBA_CPU_NAME="generic", NUMBA_CPU_FEATURES="",
                       NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
            native = subprocess.run(run, capture_output=True, text=True, env=env)
            if native.returncode != 0:
                sys.exit(f"the run compiling for a generic CPU failed:\n{native.stderr[-2000:]}")
            os.remove(info)     # (the code's addresses are the run under valgrind's to report)
        cmd = ["valgrind", "--tool=callgrind", "--dump-instr=yes", f"--callgrind-out-file={out}"] + run
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not os.path.exists(info):
            sys.exit(f"the run under valgrind failed:\n{proc.stderr[-2000:]}")
        with open(info) as f:
            meta = json.load(f)
        ir = kernel_instructions(out, meta["ranges"])
    sets = "".join(f" --set {t}" for t in a.set)
    print(f"{a.strategy} on {a.scenario}{sets}: {ir / meta['requests']:.1f} kernel instructions per request "
          f"({meta['requests']:,} requests{', generic CPU' if a.generic else ''})")


if __name__ == "__main__":
    main()
