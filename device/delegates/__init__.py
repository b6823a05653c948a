"""Delegates: where LiteRT runs the models (``cpu``, ``gpu``, ``edgetpu``), as plug-ins.

Each delegate is a module here with a type key, the manifest ``target`` of the model variants
it runs, and ``load(cfg)``, which opens its library and returns the LiteRT delegate objects
for one interpreter (none for the plain CPU). A library that cannot be opened raises
``DelegateUnavailable`` naming the library and the fix. Adding one is a module and one
``register`` call.

What happens then is the ``[models] fallback`` option (``--fallback`` on the command line):

- ``fail`` (default): the start is refused, exit 2 with that one line; ``bedside run
  --check-config`` refuses the config the same way (exit 1);
- ``cpu``: a warning, the models run on the CPU (the CPU variants of the models are chosen),
  and the bed's retained status carries ``"degraded": {...}`` naming the delegate, its
  library and the reason, so a ward sees that the bed runs without its accelerator.

``resolve_delegate`` decides this once per process and configuration (a library that cannot
be opened now will not open a second later), so the models, the daemon's status and a
looping replay's new core all agree.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from device.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from device.config import ModelsConfig
    from device.inference import Runner

log = logging.getLogger("bedside.delegates")

#: what ``[models] fallback`` (``--fallback``) accepts
FALLBACKS = ("fail", "cpu")


class DelegateUnavailable(UserError):
    """A delegate's library cannot be opened or refuses to start."""

    def __init__(self, delegate: str, library: str, what: str, fix: str) -> None:
        self.delegate = delegate
        self.library = library
        super().__init__(what, fix)


class Delegate(Protocol):
    #: the registry key ([models] delegate, --delegate)
    key: str
    #: which model variant this delegate runs (the manifest's "target")
    target: str
    #: model variants (manifest "quant") it runs, best first
    quants: tuple[str, ...]

    def library(self, cfg: ModelsConfig) -> str:
        """The shared library it loads ('' for none)."""

    def load(self, cfg: ModelsConfig) -> list[Any]:
        """The LiteRT delegate objects for one interpreter (empty for plain CPU); raises
        ``DelegateUnavailable``. ``resolve_delegate`` calls it once to see that the delegate
        starts."""

    def open(self, path: Path, cfg: ModelsConfig) -> Runner:
        """One model loaded to run here (``interpreter_runner`` for the classic Interpreter
        with ``load``'s delegate objects)."""


def interpreter_runner(path: Path, delegates: list[Any], cfg: ModelsConfig) -> Runner:
    """The model in LiteRT's classic Interpreter with these delegate objects."""
    from device.inference import InterpreterRunner

    return InterpreterRunner(path, delegates, cfg.threads)


def open_library(library: str) -> Any:
    """LiteRT's ``load_delegate``, once the library is known to open: LiteRT's Delegate, given
    a library that does not, fails half-built and its ``__del__`` prints an AttributeError
    ("Exception ignored in Delegate.__del__") on stderr, a confusing line on a ward log.
    Raises OSError naming the library when it cannot be opened."""
    from device.inference import interpreter_module

    ctypes.CDLL(library)
    return interpreter_module().load_delegate(library)


@dataclass(frozen=True)
class Degraded:
    """The bed runs without what it was configured for: the retained status's ``degraded``."""

    delegate: str  # the delegate configured, e.g. "edgetpu"
    library: str  # the library that did not load
    reason: str  # why, in one line
    fix: str  # what to do about it
    running_on: str = "cpu"

    def to_payload(self) -> dict[str, str]:
        return {
            "delegate": self.delegate,
            "library": self.library,
            "running_on": self.running_on,
            "reason": self.reason,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class DelegateChoice:
    """The outcome of ``resolve_delegate``: the delegate models run on, and whether that is a
    fallback."""

    requested: str
    key: str
    degraded: Degraded | None = None


#: key -> delegate (filled by ``register`` below)
DELEGATES: dict[str, Delegate] = {}


def register(delegate: Delegate) -> None:
    """Add (or replace) a delegate type."""
    DELEGATES[delegate.key] = delegate


_RESOLVED: dict[tuple[str, str, str], DelegateChoice] = {}


def resolve_delegate(cfg: ModelsConfig) -> DelegateChoice:
    """Try the configured delegate once (its library opened and one delegate object made and
    dropped; each interpreter later makes its own). Raises ``DelegateUnavailable`` with
    ``fallback = "fail"``; with ``"cpu"``, warns once and returns the CPU with ``degraded``."""
    memo = (cfg.delegate, cfg.delegate_path, cfg.fallback)
    if memo in _RESOLVED:
        return _RESOLVED[memo]
    delegate = DELEGATES[cfg.delegate]
    try:
        delegate.load(cfg)
    except DelegateUnavailable as e:
        if cfg.fallback != "cpu":
            raise
        log.warning(
            "delegate %s unavailable, models run on the CPU ([models] fallback = cpu): %s",
            cfg.delegate,
            e.message,
        )
        choice = DelegateChoice(
            cfg.delegate, "cpu", Degraded(cfg.delegate, e.library, e.what, e.fix or "")
        )
    else:
        choice = DelegateChoice(cfg.delegate, cfg.delegate)
    _RESOLVED[memo] = choice
    return choice


def _register_builtin() -> None:
    from device.delegates.cpu import CpuDelegate
    from device.delegates.edgetpu import EdgeTpuDelegate
    from device.delegates.gpu import GpuDelegate

    for d in (CpuDelegate(), GpuDelegate(), EdgeTpuDelegate()):
        register(d)


_register_builtin()
