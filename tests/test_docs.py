"""Change-aversion checks on documentation generated from code."""

from __future__ import annotations

from pathlib import Path

import device.config as config

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_up_to_date() -> None:
    """docs/configuration.md is generated from the config dataclasses; regenerate with
    python -c "import device.config as c; print(c.reference_markdown(), end='')" \\
        > docs/configuration.md"""
    assert (ROOT / "docs" / "configuration.md").read_text() == config.reference_markdown()


def test_every_config_key_is_described() -> None:
    text = config.reference_markdown()
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert len(rows) > 40
    assert all(not ln.rstrip().endswith("|  |") for ln in rows), "a key without a description"


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    text = _readme()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [ln.split("#", 1)[0].strip() for ln in block.splitlines() if ln.strip()]
    assert commands == ["bash .ci/bootstrap demo", "bash .ci/bootstrap test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec bash .ci/bootstrap test\n" in ci


def test_every_script_file_and_link_the_readme_names_exists() -> None:
    import re

    text = _readme()
    scripts = set(re.findall(r"python (bench/[a-z_]+\.py)", text))
    assert len(scripts) > 10
    links = set(re.findall(r"\]\(([^)#]+)", text))
    paths = set(re.findall(r"`((?:device|lab|station|convert|tests|systemd|bench)/[\w/.]+)`", text))
    missing = sorted(p for p in scripts | links | paths if not (ROOT / p).exists())
    assert missing == [], missing
