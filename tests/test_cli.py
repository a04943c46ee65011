"""The training scripts' command lines: every numeric option with a declared range refuses a value
outside it, naming the option, before any work starts (from the command line and from code)."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from agents.cli import check_ranges, parse_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("foveal", "fullview", "what_where", "ram", "stn", "neva", "ppo")


def _script(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"train_{name}_cli", ROOT / "train" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _outside(meta: dict) -> list:
    """Values just outside a field's declared range."""
    out = []
    if "min" in meta:
        out.append(meta["min"] - 1)
    if "above" in meta:
        out.append(meta["above"])
    if "max" in meta:
        out.append(meta["max"] + 1)
    if "below" in meta:
        out.append(meta["below"])
    return out


@dataclasses.dataclass(frozen=True)
class _Toy:
    n: int = dataclasses.field(default=1, metadata={"min": 1})
    rate: float = dataclasses.field(default=0.5, metadata={"above": 0, "max": 1})
    free: float = -3.0
    maybe: int | None = dataclasses.field(default=None, metadata={"min": 0})
    share: float = dataclasses.field(default=0.0, metadata={"min": 0, "below": 1})

    def __post_init__(self):
        check_ranges(self)


def test_check_ranges_messages():
    _Toy()
    _Toy(n=1, rate=1.0, maybe=0, share=0.999)
    for kw, msg in [({"n": 0}, "--n must be >= 1, got 0"), ({"rate": 0.0}, "--rate must be > 0 and <= 1, got 0.0"),
                    ({"rate": 1.5}, "--rate must be > 0 and <= 1, got 1.5"), ({"maybe": -1}, "--maybe must be >= 0"),
                    ({"share": 1.0}, "--share must be >= 0 and < 1, got 1.0")]:
        with pytest.raises(ValueError) as err:
            _Toy(**kw)
        assert msg in str(err.value)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_ranged_option_refuses_a_value_outside_its_range(name, monkeypatch, capsys):
    mod = _script(name, monkeypatch)
    cfg_cls = mod.Config
    cfg_cls()  # the defaults are valid
    ranged = [f for f in dataclasses.fields(cfg_cls) if {"min", "above", "max", "below"} & set(f.metadata)]
    assert ranged, f"train/{name}.py declares no ranges"
    for f in ranged:
        flag = "--" + f.name.replace("_", "-")
        for bad in _outside(f.metadata):
            with pytest.raises(ValueError, match=flag):
                cfg_cls(**{f.name: bad})
    f = ranged[0]
    bad = _outside(f.metadata)[0]
    with pytest.raises(SystemExit):  # argparse's error: the message, then exit status 2
        parse_config(cfg_cls, ["--" + f.name.replace("_", "-"), str(bad)])
    assert "--" + f.name.replace("_", "-") in capsys.readouterr().err
