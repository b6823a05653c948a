"""What a board format is: a type key, named layouts (presets), and how to parse its byte
stream and (for the board emulator and tests) how to produce one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from device.sources.formats.openview import Decoded, FieldSpec, ParserCounters


class Parser(Protocol):
    """Incremental: bytes in any chunking, the samples of every complete valid frame out."""

    counters: ParserCounters

    def feed(self, data: bytes | bytearray | memoryview) -> Decoded: ...

    def reset(self) -> None:
        """Forget a partial frame (after the port was reopened); counters are kept."""


@dataclass(frozen=True)
class BoardFormat:
    key: str  # the [serial] format value, e.g. "openview"
    presets: Mapping[str, tuple[FieldSpec, ...]]  # named layouts, e.g. "healthypi5"
    default_preset: str
    check: Callable[[tuple[FieldSpec, ...]], None]  # raises ValueError on a bad layout
    parser: Callable[[tuple[FieldSpec, ...]], Parser]
    #: role signals -> the bytes a board sends (format options such as counts_per_unit or
    #: decimals as keywords)
    encode: Callable[..., bytes]
    #: where each sample starts in an encoded stream (and its total length last)
    sample_offsets: Callable[[bytes], np.ndarray]
