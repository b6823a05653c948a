"""A Debian trixie (amd64) root with a software Vulkan device, to run LiteRT's GPU
accelerator for real on a machine without a GPU.

Debian 12's lavapipe (Mesa 22.3) lacks Vulkan features the accelerator's WebGPU layer (Dawn)
requires (``shaderSampledImageArrayDynamicIndexing``, ``shaderStorageImageArrayDynamicIndexing``);
Debian 13's (Mesa 25.0) has them. So the GPU path runs in a trixie root made with
``mmdebstrap``, kept in ``~/.cache/bedside/gpubox`` (beside the Pi in a box's; or
``$BEDSIDE_GPUBOX_CACHE``) and reused while ``VERSION`` is unchanged, entered with ``chroot``
in a private mount namespace (``unshare -m``: /proc, /dev and the checkout are bound in and
vanish with it). Its Python (3.13) gets a virtual environment from wheels that the host's
pip downloads for it (cp313, manylinux x86_64), and runs the checkout's code with
``PYTHONPATH``.

    python -m lab.gpubox [--cache DIR] -- python3 -c "..."     # run a command in the box

Needs root, ``mmdebstrap`` and ``unshare`` (util-linux), and Debian's and PyPI's registries
for the first build. ``GpuBoxUnavailable`` says which is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from device.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SUITE = "trixie"
PACKAGES = ("python3", "python3-venv", "libvulkan1", "mesa-vulkan-drivers", "ca-certificates")
#: what the box's Python needs to run device.inference (the appliance's runtime deps)
WHEELS = ("numpy", "scipy", "ai-edge-litert", "paho-mqtt", "pyserial")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")
PY = "3.13"  # trixie's python3
VERSION = "1"  # bump when PACKAGES or WHEELS change: a new root is built


class GpuBoxUnavailable(UserError):
    pass


def default_cache() -> Path:
    default = Path.home() / ".cache" / "bedside" / "gpubox"
    return Path(os.environ.get("BEDSIDE_GPUBOX_CACHE", str(default)))


def root_dir(cache: Path) -> Path:
    return cache / f"{SUITE}-amd64-v{VERSION}"


def ensure(cache: Path | None = None, log: bool = True) -> tuple[Path, dict[str, float]]:
    """The box's root (built when absent) and how long each step took (0 when reused)."""
    cache = cache or default_cache()
    root = root_dir(cache)
    times = {"build_s": 0.0, "wheels_s": 0.0}
    if (root / "opt/venv/.complete").is_file():
        return root, times
    if os.geteuid() != 0:
        raise GpuBoxUnavailable("the GPU box needs root (mmdebstrap, chroot)", "run as root")
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise GpuBoxUnavailable(f"{tool} is missing", "apt-get install -y mmdebstrap")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    if log:
        print(f"gpubox: building a {SUITE} root in {root} (mmdebstrap)", file=sys.stderr)
    subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         SUITE, str(tmp)],
        check=True,
    )  # fmt: skip
    times["build_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    wheels = tmp / "opt/wheels"
    wheels.mkdir(parents=True)
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--python-version", PY, *plat, "-d", str(wheels), *WHEELS],
        check=True,
    )  # fmt: skip
    _chroot(tmp, ["python3", "-m", "venv", "/opt/venv"]).check_returncode()
    _chroot(
        tmp,
        ["/opt/venv/bin/pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheels",
         *WHEELS],
    ).check_returncode()  # fmt: skip
    (tmp / "opt/venv/.complete").write_text("")
    times["wheels_s"] = time.monotonic() - t0
    tmp.rename(root)
    return root, times


def _chroot(
    root: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``argv`` in the box: a private mount namespace with /proc, /dev and the checkout (at
    /src, read-only) bound in."""
    script = (
        'set -e; R="$1"; shift; mount --bind /proc "$R/proc"; mount --rbind /dev "$R/dev"; '
        'mkdir -p "$R/src" "$R/out"; mount --bind "$SRC" "$R/src"; '
        'mount -o remount,bind,ro "$R/src"; '
        'if [ -n "$OUT" ]; then mount --bind "$OUT" "$R/out"; fi; exec chroot "$R" "$@"'
    )
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    full = {**base, "SRC": str(ROOT), "OUT": "", **(env or {})}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root),
         *argv],
        env=full,
        text=True,
        capture_output=capture_output,
        timeout=timeout,
        check=False,
    )  # fmt: skip


def run(
    argv: list[str], out_dir: Path | None = None, cache: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``argv`` in the box with the checkout's code importable (PYTHONPATH=/src), the box's
    virtual environment first on PATH, and ``out_dir`` (if given) at /out."""
    root, _ = ensure(cache)
    env = {
        "PATH": "/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": "/src",
        "PYTHONDONTWRITEBYTECODE": "1",
        "XDG_RUNTIME_DIR": "/tmp",
    }
    if out_dir is not None:
        env["OUT"] = str(out_dir.resolve())
    return _chroot(root, argv, env=env, capture_output=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("command", nargs="+")
    a = ap.parse_args(argv)
    done = run(a.command, cache=a.cache)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
