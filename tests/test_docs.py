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
