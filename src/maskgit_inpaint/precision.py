"""Which processors run bf16 natively: the one place `precision: auto` is decided.

bf16 autocast is a speed-up only where the hardware multiplies bf16: a CUDA GPU that supports
it, or a CPU with AMX (amx_bf16) or AVX512-BF16. Elsewhere (e.g. AVX2-only AMD EPYC) oneDNN
emulates it and bf16 is several times slower than fp32, so `auto` means fp32 there.
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

# /proc/cpuinfo flags of the native bf16 paths oneDNN uses
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# torch.backends.cpu.get_cpu_capability() names that imply one of them
BF16_CAPABILITIES = ("AVX512_BF16", "AMX", "AVX512_AMX")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The processor's model name (lscpu's 'Model name'), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """torch's view of the CPU's vector ISA (e.g. AVX512, AVX2, DEFAULT)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old torch builds
        return "unknown"


def cpu_has_native_bf16(flags: frozenset[str] | None = None, capability: str | None = None) -> bool:
    """Whether bf16 matmuls run natively on this CPU (AMX or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    capability = cpu_capability() if capability is None else capability
    return any(f in flags for f in BF16_FLAGS) or capability.upper() in BF16_CAPABILITIES


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 is the fast choice on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


# What inference's `auto` runs on a CPU with native bf16: the transformer (its output head in
# fp32) and the decoder in bf16, the encoder in fp32. Its FID on val against fp32, 3 seeds, and
# the earlier choice ("mixed", when the head was bf16 too): docs/benchmarks.md.
CPU_INFERENCE = "bf16"


def auto_precision(device: torch.device | str, stage: str = "inference") -> str:
    """What `precision: auto` runs on `device`: fp32 without native bf16; with it, bf16 for
    training and on a GPU, and `CPU_INFERENCE` for inference on a CPU."""
    device = torch.device(device)
    if not native_bf16(device):
        return "fp32"
    return "bf16" if stage == "training" or device.type != "cpu" else CPU_INFERENCE


def describe_processor(device: torch.device | str) -> dict:
    """The processor a result was measured on: name, vector ISA, bf16 flags, auto's choice."""
    device = torch.device(device)
    auto = {"native_bf16": native_bf16(device), "auto_precision": auto_precision(device),
            "auto_precision_training": auto_precision(device, "training")}
    if device.type == "cuda":
        return {"processor": torch.cuda.get_device_name(device), **auto}
    flags = cpu_flags()
    return {"processor": cpu_name(), "cpu_capability": cpu_capability(),
            "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))), **auto}


def precision_line(requested: str, resolved: str, device: torch.device | str) -> str:
    """One line for a command's output: what precision runs and why."""
    device = torch.device(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    why = ""
    if requested == "auto":
        why = " (auto: native bf16)" if resolved != "fp32" else " (auto: no native bf16)"
    return f"precision {resolved}{why} on {where}"
