"""The ``gpu`` delegate: the TFLite GPU delegate library that the user built for the board
(no prebuilt one exists for Linux; docs/deploy.md shows the Bazel build for a Jetson)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from device.delegates import DelegateUnavailable, open_library

if TYPE_CHECKING:
    from device.config import ModelsConfig

DEFAULT_NAME = "libtensorflowlite_gpu_delegate.so"


class GpuDelegate:
    key = "gpu"
    target = "gpu"
    quants: tuple[str, ...] = ("float16", "float32")

    def library(self, cfg: ModelsConfig) -> str:
        return cfg.delegate_path or DEFAULT_NAME

    def load(self, cfg: ModelsConfig) -> list[Any]:
        if not cfg.delegate_path:
            raise DelegateUnavailable(
                self.key,
                DEFAULT_NAME,
                f'GPU delegate {DEFAULT_NAME}: no path given ([models] delegate = "gpu" '
                "needs delegate_path)",
                f"build {DEFAULT_NAME} for the board (e.g. a Jetson, docs/deploy.md) and set "
                "[models] delegate_path (--delegate-path); no prebuilt GPU delegate exists "
                "for Linux",
            )
        try:
            return [open_library(cfg.delegate_path)]
        except (ValueError, OSError, RuntimeError) as e:
            raise DelegateUnavailable(
                self.key,
                cfg.delegate_path,
                f"GPU delegate {cfg.delegate_path} failed to load ({_one_line(e)})",
                "check the path and that the library was built for this board and this "
                "LiteRT version (docs/deploy.md)",
            ) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
