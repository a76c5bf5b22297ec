"""What the README says about the project's own files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_names_every_benchmark_script_and_no_other():
    named = set(re.findall(r"`(bench_\w+\.py)`", README))
    assert named == {path.name for path in (ROOT / "benchmarks").glob("bench_*.py")}


def test_the_two_set_up_commands_are_make_targets():
    commands = re.findall(r"^make (\w+)", README.split("## Set-up on a fresh machine")[1].split("##")[0], re.M)
    assert commands == ["demo", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.M), target
