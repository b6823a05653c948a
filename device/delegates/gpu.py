"""The ``gpu`` delegate, two ways:

- no ``[models] delegate_path``: LiteRT's own GPU accelerator (WebGPU over Vulkan, in the
  ``ai-edge-litert`` 2.x wheels; ``device/delegates/litert_gpu.py``), ops it cannot run left
  on the CPU;
- ``delegate_path = LIB``: the classic TFLite GPU delegate library built for the board
  (OpenCL / OpenGL ES; docs/deploy.md shows the Bazel build for a Jetson).

Either way a GPU that does not start is ``DelegateUnavailable`` naming the cause, and the
``[models] fallback`` decides (fail, or the CPU with ``degraded`` in the status).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.delegates import DelegateUnavailable, interpreter_runner, open_library

if TYPE_CHECKING:
    from device.config import ModelsConfig
    from device.inference import Runner

DEFAULT_NAME = "libtensorflowlite_gpu_delegate.so"
#: what ``degraded.library`` names when LiteRT's built-in accelerator did not start
ACCELERATOR = "libLiteRtWebGpuAccelerator.so (LiteRT GPU accelerator, Vulkan)"
VULKAN_FIX = (
    "give the GPU a Vulkan driver the accelerator accepts (libvulkan1 and the board's driver: "
    "NVIDIA's on a Jetson, mesa-vulkan-drivers 25 or newer for Mesa; see docs/deploy.md), or "
    "set [models] delegate_path to a TFLite GPU delegate library, or run on the CPU "
    '([models] delegate = "cpu", or fallback = "cpu")'
)


class GpuDelegate:
    key = "gpu"
    target = "gpu"
    quants: tuple[str, ...] = ("float16", "float32")

    def library(self, cfg: ModelsConfig) -> str:
        return cfg.delegate_path or ACCELERATOR

    def load(self, cfg: ModelsConfig) -> list[Any]:
        if not cfg.delegate_path:
            self.open(_probe_model(cfg), cfg)  # the accelerator starts, or says why not
            return []
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

    def open(self, path: Path, cfg: ModelsConfig) -> Runner:
        if cfg.delegate_path:
            return interpreter_runner(path, self.load(cfg), cfg)
        from device.delegates.litert_gpu import AcceleratorUnavailable, CompiledModelRunner

        try:
            return CompiledModelRunner(path, cfg.threads)
        except ImportError as e:
            raise DelegateUnavailable(
                self.key,
                ACCELERATOR,
                f"LiteRT has no CompiledModel API ({_one_line(e)})",
                "pip install 'ai-edge-litert>=2' (or set [models] delegate_path)",
            ) from None
        except AcceleratorUnavailable as e:
            raise DelegateUnavailable(
                self.key,
                ACCELERATOR,
                f"LiteRT GPU accelerator (WebGPU over Vulkan) did not start ({e})",
                VULKAN_FIX,
            ) from None


def _probe_model(cfg: ModelsConfig) -> Path:
    """A model to start the accelerator with: a GPU variant of the configured or shipped ones."""
    from device.inference import models_dir, shipped_models_dir

    for folder in (models_dir(cfg), shipped_models_dir()):
        found = sorted(folder.glob("*_float16.tflite")) + sorted(folder.glob("*.tflite"))
        if found:
            return found[0]
    raise DelegateUnavailable(
        "gpu", ACCELERATOR, "no model to start the LiteRT GPU accelerator with", "reinstall"
    )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
