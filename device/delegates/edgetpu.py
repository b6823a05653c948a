"""The ``edgetpu`` delegate: a Coral Edge TPU through ``libedgetpu.so.1`` (Coral's Edge TPU
runtime). It runs only models compiled by ``edgetpu_compiler`` (full int8, static shapes;
manifest target ``edgetpu``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from device.delegates import DelegateUnavailable, interpreter_runner, open_library

if TYPE_CHECKING:
    from pathlib import Path

    from device.config import ModelsConfig
    from device.inference import Runner

LIBRARY = "libedgetpu.so.1"


class EdgeTpuDelegate:
    key = "edgetpu"
    target = "edgetpu"
    quants: tuple[str, ...] = ("int8",)

    def library(self, cfg: ModelsConfig) -> str:
        return LIBRARY

    def load(self, cfg: ModelsConfig) -> list[Any]:
        try:
            return [open_library(LIBRARY)]
        except (ValueError, OSError, RuntimeError) as e:
            reason = " ".join(str(e).split()) or "not found"
            raise DelegateUnavailable(
                self.key,
                LIBRARY,
                f"Edge TPU delegate {LIBRARY} failed to load ({reason})",
                "install the Edge TPU runtime (apt package libedgetpu1-std from Coral's "
                "repository) and plug in the accelerator, or run on the CPU "
                '([models] delegate = "cpu", or fallback = "cpu")',
            ) from None

    def open(self, path: Path, cfg: ModelsConfig) -> Runner:
        return interpreter_runner(path, self.load(cfg), cfg)
