"""llama-cpp-python as the demo and the real-model tests run it: how to build it so that it runs on
every CPU, and why a model server died when it did.

pip builds llama.cpp natively by default. On a CPU with Intel AMX (`amx_int8` in /proc/cpuinfo)
that build dies on its first completion of a quantized model, with SIGILL or a general protection
fault in the AMX repack of libggml-cpu.so (llama.cpp #20824), and pip's wheel cache keeps the
broken build whatever CMAKE_ARGS says next time. A build without -march=native and without AMX
runs everywhere; `.ci/llama-cpp-python` makes it, and the messages here say how by hand.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                       "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")
REBUILD = (f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --no-cache-dir --force-reinstall --no-deps '
           "'llama-cpp-python>=0.3'")


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return "amx_int8" in cpuinfo.read_text(errors="replace")
    except OSError:
        return False


def build_features(python: str = sys.executable) -> str:
    """What the installed llama.cpp was compiled for (`AVX2 = 1 | AMX_INT8 = 1 | ...`), read in a child
    process so that a library that cannot even load says so instead of taking this one down."""
    try:
        done = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def built_with_amx(features: str) -> bool:
    return "AMX_INT8 = 1" in features


def _signal_of(returncode: int) -> int | None:
    if returncode < 0:
        return -returncode
    if returncode > 128:  # a shell's way of saying the same (132 = 128 + SIGILL)
        return returncode - 128
    return None


def why_it_died(returncode: int, log: str, *, amx_cpu: bool | None = None, features: str | None = None) -> str:
    """A model server's death told as a person needs it: the signal, whether it is the AMX crash, and the
    command that fixes it."""
    sig = _signal_of(returncode)
    name = signal.Signals(sig).name if sig is not None and sig in signal.Signals._value2member_map_ else None
    how = f"exit status {returncode}" + (f" ({name})" if name else "")
    amx_cpu = cpu_has_amx() if amx_cpu is None else amx_cpu
    features = build_features() if features is None else features
    crashed = name in {"SIGILL", "SIGSEGV", "SIGBUS"} or "general protection" in log
    if not crashed:
        return f"llama.cpp's server exited ({how}); the end of its log:\n{log[-1500:]}"
    amx = amx_cpu or built_with_amx(features) or "amx" in log.lower()
    cause = ("this CPU has Intel AMX and llama-cpp-python was built natively; that build crashes in its AMX "
             "code on the first completion of a quantized model (llama.cpp #20824)" if amx else
             "llama-cpp-python was probably built for another CPU (pip's wheel cache keeps a build made elsewhere)")
    return (f"llama.cpp's server crashed ({how}): {cause}.\n"
            f"Rebuild it to run on every CPU, bypassing pip's cache:\n  {REBUILD}\n"
            f"The end of its log:\n{log[-1500:]}")
