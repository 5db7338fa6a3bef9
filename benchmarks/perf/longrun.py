"""A long run with its memory sampled throughout:

    python benchmarks/perf/longrun.py [--requests 1000000000] [--strategy round_robin] [--scenario reference]

Runs `lbbench run` in a child process, samples the child's resident set (VmRSS) every
`--every` seconds, and prints the wall time, the simulated requests per second, the peak
resident set and the resident set at 10%, 50% and 90% of the run's wall time. Memory that does
not grow with the number of requests shows as equal figures at 10%, 50% and 90% (growth =
RSS at 90% minus RSS at 10%). Linux only (reads /proc).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000_000)
    ap.add_argument("--strategy", default="round_robin")
    ap.add_argument("--scenario", default="reference")
    ap.add_argument("--every", type=float, default=1.0, help="sampling period, seconds")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "lbbench", "run", a.scenario, "--strategy", a.strategy,
               "--requests", str(a.requests), "--out", out]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples: list[tuple[float, float]] = []
        while child.poll() is None:
            m = rss_mb(child.pid)
            if m is not None:
                samples.append((time.perf_counter() - t0, m))
            time.sleep(a.every)
        wall = time.perf_counter() - t0
        text = child.stdout.read()
    if child.returncode != 0 or not samples:
        print(text)
        print(f"run failed (exit {child.returncode})")
        return 1

    def at(frac: float) -> float:
        t = frac * wall
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    res = {"scenario": a.scenario, "strategy": a.strategy, "requests": a.requests,
           "wall_s": round(wall, 1), "req_per_s": round(a.requests / wall),
           "ns_per_request": round(wall / a.requests * 1e9, 1),
           "rss_mb_peak": round(max(m for _, m in samples), 1),
           "rss_mb_at": {f"{int(f * 100)}%": round(at(f), 1) for f in (0.1, 0.5, 0.9)},
           "samples": len(samples)}
    res["growth_mb_10_to_90"] = round(res["rss_mb_at"]["90%"] - res["rss_mb_at"]["10%"], 1)
    print(text.strip())
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
