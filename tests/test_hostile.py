"""Hostile input: every malformed scenario, sweep file, trace and command line in
tests/hostile/ gives one line naming the field, exit code 2, no traceback, and nothing is
written to the output folder."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lbbench.cli import main

HERE = Path(__file__).parent / "hostile"
ROOT = Path(__file__).parent.parent


def _expect(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: ")
    return first[len("# expect: "):].strip()


def _materialise(path: Path, tmp_path: Path) -> Path:
    """Copy a corpus file, pointing TRACES/ at the corpus's trace folder."""
    data = path.read_bytes().replace(b"TRACES/", str(HERE / "traces").encode() + b"/")
    out = tmp_path / path.name
    out.write_bytes(data)
    return out


def _run(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    cap = capsys.readouterr()
    return exc.value.code, cap.err


def _check(code, err, expect, out: Path):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lbbench: error:")
    assert expect in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


SCENARIOS = sorted((HERE / "scenarios").glob("*.toml"))
SWEEPS = sorted((HERE / "sweeps").glob("*.toml"))
# one hostile command line per line, in commands.txt and commands_<area>.txt
COMMANDS = [line for f in sorted(HERE.glob("commands*.txt")) for line in f.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_corpus_is_large():
    # 101 inputs before the store, limits, process and plugin rounds; 328 after
    assert len(SCENARIOS) + len(SWEEPS) + len(COMMANDS) >= 300
    assert len(list((HERE / "plugins").glob("*.py"))) >= 10


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_hostile_scenario(path, tmp_path, capsys):
    f = _materialise(path, tmp_path)
    out = tmp_path / "out"
    code, err = _run(capsys, ["run", str(f), "--out", str(out)])
    _check(code, err, _expect(path), out)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_hostile_sweep(path, tmp_path, capsys):
    f = _materialise(path, tmp_path)
    out = tmp_path / "out"
    code, err = _run(capsys, ["sweep", str(f), "--out", str(out)])
    _check(code, err, _expect(path), out)


@pytest.mark.parametrize("line", COMMANDS, ids=lambda l: l.split("|", 1)[1].strip()[:60])
def test_hostile_command_line(line, tmp_path, capsys, monkeypatch):
    expect, cmd = (x.strip() for x in line.split("|", 1))
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    blocker = tmp_path / "plainfile"
    blocker.write_text("x")
    args = [a.replace("NOWRITE", str(blocker / "sub")).replace("OUT", str(out)) for a in shlex.split(cmd)]
    code, err = _run(capsys, args)
    _check(code, err, expect, out)
