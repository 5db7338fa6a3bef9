"""docs/strategies.md runs as written: its `# file:` blocks are written to an empty folder, then
every `$ lbbench ...` command (a `python -m lbbench` process) and every other Python block (in
this process) runs there, in document order, and must succeed (the guide's asserts included)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl

GUIDE = Path(__file__).parent.parent / "docs" / "strategies.md"


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w+)\n(.*?)^```", GUIDE.read_text(), re.S | re.M)]


def test_the_guide_has_the_promised_steps():
    kinds = blocks()
    files = [b.splitlines()[0][len("# file: "):] for _, b in kinds if b.startswith("# file: ")]
    commands = [ln[2:] for lang, b in kinds if lang == "console" for ln in b.splitlines() if ln.startswith("$ ")]
    assert files == ["two_delay.py", "two_delay_sweep.toml"]
    assert [c.split()[1] for c in commands] == ["run", "check", "sweep"]
    strategy = next(b for _, b in kinds if b.startswith("# file: two_delay.py"))
    assert 10 <= len([ln for ln in strategy.splitlines() if ln.strip() and not ln.startswith("#")]) <= 20


def test_the_guide_runs_as_written(tmp_path, monkeypatch):
    ran = []
    for lang, body in blocks():
        first = body.splitlines()[0]
        if first.startswith("# file: "):
            (tmp_path / first[len("# file: "):].strip()).write_text(body)
            continue
        if lang == "console":
            for line in body.splitlines():
                if not line.startswith("$ "):
                    continue
                cmd = line[2:].split()
                assert cmd[0] == "lbbench"
                p = subprocess.run([sys.executable, "-m", "lbbench", *cmd[1:]], cwd=tmp_path, capture_output=True,
                                   text=True, timeout=600)
                assert p.returncode == 0, f"{line}\n{p.stdout}\n{p.stderr}"
                ran.append(cmd[1])
        elif lang == "python":
            monkeypatch.chdir(tmp_path)             # in this process (saves an interpreter start)
            exec(compile(body, f"{GUIDE.name} python block", "exec"), {"__name__": "__guide__"})
            ran.append("python")
    assert ran == ["run", "python", "check", "python", "sweep", "python"]
    runs = pl.read_parquet(tmp_path / "results" / "two_delay" / "runs" / "*.parquet")
    assert runs.height == 24 and runs["run_hash"].n_unique() == 24 and set(runs["status"]) == {"ok"}
