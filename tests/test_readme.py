"""The README: its quick start runs as written on a CPU, its links resolve, and it stays short."""
from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def quickstart_code(path: Path = README) -> str:
    """The ```python block between the README's quickstart section markers."""
    text = path.read_text()
    start, end = "--8<-- [start:quickstart]", "--8<-- [end:quickstart]"
    assert start in text and end in text, f"{path} lacks the quickstart markers"
    section = text[text.index(start):text.index(end)]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, f"no ```python block between the quickstart markers of {path}"
    return block.group(1)


def test_quickstart_runs_as_written_on_a_cpu(capsys):
    torch.set_num_threads(1)
    code = quickstart_code()
    assert "cuda" not in code, "the quick start must run on a CPU"
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "STN, one saccade" in out
    assert namespace["frame"].ndim == 3 and namespace["frame"].shape[2] == 3
    assert tuple(namespace["obs"]["fovea"].shape) == (64, 1, 28, 28)
    assert 0.0 <= namespace["result"].accuracy <= 1.0 and len(namespace["result"].correct) == 200


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "<!-- results:start -->" in text and "<!-- results:end -->" in text
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_readme_commands_match_ci():
    """The README's test command is what .ci/run runs."""
    readme, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    command = re.search(r"```bash\n(pip install [^\n]*&& pytest)\n```", readme)
    assert command, "the README gives its test command as `pip install ... && pytest`"
    install, _ = command.group(1).split(" && ")
    assert install.replace("pip install ", "") in ci and "pytest" in ci
