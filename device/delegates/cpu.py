"""The ``cpu`` delegate: LiteRT's own kernels (XNNPACK), nothing to load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from device.delegates import interpreter_runner

if TYPE_CHECKING:
    from pathlib import Path

    from device.config import ModelsConfig
    from device.inference import Runner


class CpuDelegate:
    key = "cpu"
    target = "cpu"
    quants: tuple[str, ...] = ("int8", "dynamic", "float16", "float32")

    def library(self, cfg: ModelsConfig) -> str:
        return ""

    def load(self, cfg: ModelsConfig) -> list[Any]:
        return []

    def open(self, path: Path, cfg: ModelsConfig) -> Runner:
        return interpreter_runner(path, [], cfg)
