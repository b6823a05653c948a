"""Which Pythons the appliance can run on: wheels on the registry, and what installed here.

    python bench/pythons.py [--out bench/results/pythons.json]

For each Python the platforms ship (3.10: Jetson JetPack 6 / Ubuntu 22.04; 3.11: Raspberry
Pi OS Bookworm; 3.12; 3.13: Raspberry Pi OS / Debian trixie) and each 64-bit architecture
(aarch64: Raspberry Pi 4/5, Jetson; x86_64), asks PyPI through pip which is the newest
version of ``ai-edge-litert``, numpy and scipy with a binary wheel for that target
(``pip index versions --only-binary=:all: --platform ... --python-version ...``: nothing is
downloaded; manylinux up to glibc 2.35, what Ubuntu 22.04 has, Debian 12 has 2.36). Then
reads, from each virtual environment that .ci/pythons made (``.venv-pyX.Y``, and ``.venv``
for 3.11), the versions that pip actually installed there on this x86_64 machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
ARCHES = ("aarch64", "x86_64")
PACKAGES = ("ai-edge-litert", "numpy", "scipy")
GLIBC = ("2_17", "2_27", "2_28", "2_31", "2_34", "2_35")
#: what the appliance imports: the versions installed in each environment
RUNTIME = ("numpy", "scipy", "ai-edge-litert", "paho-mqtt", "pyserial", "sounddevice", "tomli")


def newest_wheel(pkg: str, py: str, arch: str) -> str | None:
    plat = [a for g in GLIBC for a in ("--platform", f"manylinux_{g}_{arch}")]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", pkg, "--only-binary=:all:",
         "--python-version", py, "--implementation", "cp", *plat],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    m = re.search(rf"^{re.escape(pkg)} \(([^)]+)\)", done.stdout, re.M)
    return m.group(1) if m else None


def installed(venv: Path) -> dict[str, object] | None:
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    code = (
        "import json, platform\nfrom importlib import metadata\nv = {}\n"
        f"for n in {RUNTIME!r}:\n"
        "    try: v[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: v[n] = None\n"
        "print(json.dumps({'python': platform.python_version(), 'packages': v}))"
    )
    done = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True)
    out: dict[str, object] = json.loads(done.stdout)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pythons.json")
    a = ap.parse_args()
    t0 = time.monotonic()
    wheels: dict[str, dict[str, dict[str, str | None]]] = {}
    for py in PYTHONS:
        wheels[py] = {}
        for arch in ARCHES:
            wheels[py][arch] = {pkg: newest_wheel(pkg, py, arch) for pkg in PACKAGES}
            row = ", ".join(f"{p} {v or 'NONE'}" for p, v in wheels[py][arch].items())
            print(f"Python {py} {arch}: {row}", flush=True)
    envs = {}
    for py in PYTHONS:
        venv = ROOT / (".venv" if py == "3.11" else f".venv-py{py}")
        envs[py] = installed(venv)
        if envs[py]:
            print(f"installed here for {py} ({venv.name}): {envs[py]}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": describe(),
                "command": "python bench/pythons.py",
                "registry_query": "pip index versions PKG --only-binary=:all: --implementation cp "
                "--python-version X.Y --platform manylinux_{2_17..2_35}_ARCH",
                "newest_binary_wheel": wheels,
                "installed_x86_64": envs,
                "seconds": round(time.monotonic() - t0, 1),
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
