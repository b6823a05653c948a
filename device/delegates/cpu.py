"""The ``cpu`` delegate: LiteRT's own kernels (XNNPACK), nothing to load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.config import ModelsConfig


class CpuDelegate:
    key = "cpu"
    target = "cpu"
    quants: tuple[str, ...] = ("int8", "dynamic", "float16", "float32")

    def library(self, cfg: ModelsConfig) -> str:
        return ""

    def load(self, cfg: ModelsConfig) -> list[Any]:
        return []
