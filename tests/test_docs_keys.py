"""Every scenario key is documented: in the README's key table and in docs/model.md."""
from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from lbbench.model.scenario import Scenario

ROOT = Path(__file__).parent.parent


def _model_of(annotation) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside an annotation, and whether it is a list of them."""
    for a in typing.get_args(annotation) if typing.get_origin(annotation) is not list else (annotation,):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a, False
        if typing.get_origin(a) is list:
            (b,) = typing.get_args(a)
            if isinstance(b, type) and issubclass(b, BaseModel):
                return b, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def scenario_keys(model=Scenario, prefix: str = "") -> list[str]:
    """Dotted keys of every leaf field; `services` is documented per field (services.N.x), the
    other lists of tables (fault events, random faults) as a whole."""
    keys = []
    for name, field in model.model_fields.items():
        sub, is_list = _model_of(field.annotation)
        path = prefix + name
        if sub is not None and not is_list:
            keys += scenario_keys(sub, path + ".")
        elif sub is not None and name == "services":
            keys += scenario_keys(sub, path + ".N.")
        else:
            keys.append(path)
    return keys


def readme_table_keys() -> set[str]:
    """Keys named in the README's key table: `a.b.c`, then `.d` continues `a.b.`."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Scenario keys", 1)[1].split("\n\n", 2)[1]
    keys = set()
    for row in table.splitlines():
        first = row.split("|")[1] if row.count("|") > 2 else ""
        prefix = ""
        for tok in re.findall(r"`([^`]+)`", first):
            if tok.startswith("."):
                keys.add(prefix + tok[1:])
            else:
                keys.add(tok)
                prefix = tok.rsplit(".", 1)[0] + "." if "." in tok else ""
    return keys


def test_the_key_walk_sees_every_group():
    keys = scenario_keys()
    assert {"name", "services.N.demand.cv", "balancer.keepalive", "workload.trace", "faults.events"} <= set(keys)
    assert len(keys) >= 45


def test_every_scenario_key_is_in_the_readme_table():
    missing = [k for k in scenario_keys() if k not in readme_table_keys()]
    assert not missing, f"README key table lacks {missing}"


def test_every_scenario_key_is_in_the_model_doc():
    model = (ROOT / "docs" / "model.md").read_text()
    ticked = set(re.findall(r"`([^`]+)`", model))

    def named(key: str) -> bool:
        return re.search(r"(?<![\w.])" + re.escape(key) + r"(?!\w)", model) is not None

    missing = []
    for k in scenario_keys():
        flat = k.replace(".N.", ".")
        group, _, leaf = k.rpartition(".")
        # written in full, or as `.leaf` after its group's first key (`services.N.demand.dist`, `.cv`)
        if not (named(k) or named(flat) or (f".{leaf}" in ticked and named(group))):
            missing.append(k)
    assert not missing, f"docs/model.md lacks {missing}"
