"""What the CPU multiplies natively, read once from /proc/cpuinfo (the embedding runtime depends on it)."""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """bfloat16 matrix multiplication in hardware (AVX512_BF16 or AMX); elsewhere oneDNN emulates it,
    slower than float32 (AVX2-only machines)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def has_amx() -> bool:
    """Intel AMX tiles for bfloat16: oneDNN's bf16 matmuls run several times faster than on AVX-512."""
    return "amx_bf16" in cpu_flags() and "amx_tile" in cpu_flags()
