"""LiteRT's own GPU accelerator: WebGPU (Google's Dawn) over Vulkan, shipped inside the
``ai-edge-litert`` 2.x Linux wheels (``libLiteRtWebGpuAccelerator.so``) and reached through
its ``CompiledModel`` API rather than the classic ``Interpreter``.

The model is compiled for ``HardwareAccelerator.GPU | CPU``: ops the GPU cannot run stay on
the CPU, and ``is_fully_accelerated()`` says whether any did. What it needs from the machine
is a Vulkan loader (``libvulkan.so.1``) and a Vulkan driver whose device Dawn accepts. Dawn
refuses devices without the four ``shader*ArrayDynamicIndexing`` features, among them Debian
12's software rasteriser lavapipe (Mesa 22.3); Debian 13's (Mesa 25.0) is accepted. When it
cannot start, LiteRT raises a RuntimeError that names only a source line; the cause is in
what Dawn and LiteRT write on stderr, which is read here and put into the error.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: LiteRT/Dawn start-up lines that are not news on a ward log (every start prints them)
_CHATTER = re.compile(
    rb"^(INFO: |I0000 |WARNING: Logging before InitGoogle|Warning: maxDynamic"
    rb"|WARNING: \[(npu_registry|compiler_plugin)\.cc|\xe2\x94\x94 Could not load shared library"
    rb".*(openvino|Dispatch)|error: XDG_RUNTIME_DIR is invalid)"
)
#: the lines that say why the accelerator did not start
_CAUSE = re.compile(
    rb"(Couldn't load Vulkan[^\n]*|[^\n]*ArrayDynamicIndexing required[^\n]*|No adapters found"
    rb"|Failed to initialize WebGPU[^\n]*)"
)


@dataclass
class Captured:
    """What the native code wrote on stderr (file descriptor 2) inside ``stderr_captured``."""

    lines: list[bytes] = field(default_factory=list)

    def pass_on(self) -> None:
        """Write what is not LiteRT's or Dawn's start-up chatter to stderr after all."""
        for line in self.lines:
            if not _CHATTER.match(line):
                os.write(2, line)

    def causes(self) -> list[str]:
        out: list[str] = []
        for line in self.lines:
            for m in _CAUSE.finditer(line):
                text = " ".join(m.group(0).decode("utf-8", "replace").split())
                if text not in out:
                    out.append(text)
        return out


@contextlib.contextmanager
def stderr_captured(pass_on: bool = True) -> Iterator[Captured]:
    """Hold back what native code writes on file descriptor 2; afterwards pass on (when
    ``pass_on``) every line that is not LiteRT's or Dawn's start-up chatter."""
    got = Captured()
    try:
        saved = os.dup(2)
    except OSError:
        yield got
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield got
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            got.lines = held.read().splitlines(keepends=True)
            if pass_on:
                got.pass_on()


def _litert() -> Any:
    from ai_edge_litert import compiled_model

    return compiled_model


_ENVIRONMENT: list[Any] = []


def environment() -> Any:
    """One LiteRT environment (and so one WebGPU device) for every model of the process."""
    if not _ENVIRONMENT:
        import ai_edge_litert

        cm = _litert()
        _ENVIRONMENT.append(
            cm.Environment.create(runtime_path=os.path.dirname(ai_edge_litert.__file__))
        )
    return _ENVIRONMENT[0]


@dataclass(frozen=True)
class Tensor:
    """One input or output: shape, dtype and (for integer tensors) quantisation."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int


class CompiledModelRunner:
    """A model compiled by LiteRT for its GPU accelerator (with the CPU for what the GPU does
    not run). Raises RuntimeError (with ``causes``) when the accelerator cannot start."""

    where = "gpu"

    def __init__(self, path: Path, threads: int = 1) -> None:
        cm = _litert()
        options = cm.Options(
            hardware_accelerators=cm.HardwareAccelerator.GPU | cm.HardwareAccelerator.CPU,
            cpu_options=cm.CpuOptions(num_threads=threads),
        )
        error: RuntimeError | None = None
        with stderr_captured(pass_on=False) as log:
            try:
                self._model = cm.CompiledModel.from_file(
                    str(path), environment=environment(), options=options
                )
            except RuntimeError as e:
                error = e
        if error is not None:
            with stderr_captured(pass_on=False):  # its teardown lines are not news either
                while _ENVIRONMENT:
                    _ENVIRONMENT.pop().close()
            raise AcceleratorUnavailable(log.causes() or [" ".join(str(error).split())])
        log.pass_on()
        self.fully_accelerated = bool(self._model.is_fully_accelerated())
        self.where = "gpu" if self.fully_accelerated else "gpu+cpu"
        # quantisation parameters are not in CompiledModel's details: read them from the file
        from device.inference import interpreter_module

        with stderr_captured():
            interp = interpreter_module().Interpreter(model_path=str(path))
        self.input = tensor_of(interp.get_input_details()[0])
        self.output = tensor_of(interp.get_output_details()[0])
        self._ins = self._model.create_input_buffers(0)
        self._outs = self._model.create_output_buffers(0)
        self._n_out = int(np.prod(self.output.shape))

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One input tensor (already in the input's dtype) -> the output tensor."""
        self._ins[0].write(np.ascontiguousarray(x, dtype=self.input.dtype))
        self._model.run_by_index(0, self._ins, self._outs)
        y = self._outs[0].read(self._n_out, self.output.dtype)
        return np.asarray(y).reshape(self.output.shape)


class AcceleratorUnavailable(RuntimeError):
    """LiteRT's GPU accelerator did not start; ``causes`` are Dawn's and LiteRT's own words."""

    def __init__(self, causes: list[str]) -> None:
        self.causes = causes
        super().__init__("; ".join(causes))


def tensor_of(d: dict[str, Any]) -> Tensor:
    scale, zero = d.get("quantization", (0.0, 0))
    return Tensor(tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zero))
