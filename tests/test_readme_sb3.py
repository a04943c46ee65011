"""The "Plug in your own SB3 policy" example runs as written (first ```python block under its heading)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## Plug in your own SB3 policy"


def example_code(path: Path = DOC) -> str:
    text = path.read_text()
    assert HEADING in text, f"{path} has no heading {HEADING!r}"
    section = text[text.index(HEADING) + len(HEADING):]
    section = section[: m.start()] if (m := re.search(r"^## ", section, re.M)) else section  # this section only
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, f"no ```python block under {HEADING!r} in {path}"
    return block.group(1)


def test_sb3_example_runs_as_written(capsys):
    torch.set_num_threads(1)
    namespace = {"__name__": "__example__"}
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "accuracy with 3 saccades" in out
    assert 0.0 <= namespace["result"].accuracy <= 1.0 and len(namespace["result"].correct) == 100
