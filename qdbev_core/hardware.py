"""What machine a measurement ran on: CPU model, the ISA features that decide int8 speed, libraries.

onnxruntime's and PyTorch's int8 convolutions are fast on x86 only with VNNI (AVX-512 VNNI or
AVX-VNNI) or AMX; on an AVX2-only CPU they are no faster than fp32 (docs/BENCHMARKS.md). A speed
number without the ISA it was measured on cannot be compared, so every benchmark records
``machine_info()``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path

ISA_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                "amx_int8")
"""x86 feature flags (as /proc/cpuinfo names them) that matter for the engines' speed."""
LIBRARIES = ("torch", "onnxruntime", "numpy", "opencv-python-headless", "tensorrt")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU: ``model`` name, logical ``cores``, ``arch`` (``platform.machine()``), and which of
    ``ISA_FEATURES`` it has (``isa``, in that order)."""

    model: str
    cores: int
    arch: str
    isa: tuple[str, ...]

    @property
    def vnni(self) -> bool:
        """Has an int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX int8)."""
        return any(f in self.isa for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    def summary(self) -> str:
        """One line, e.g. ``AMD EPYC (x86_64, 2 cores; avx2 fma; no AVX-512, no VNNI)``."""
        feats = " ".join(self.isa) or "none of " + "/".join(ISA_FEATURES[:3])
        notes = []
        if self.arch in ("x86_64", "AMD64", "i686"):
            if "avx512f" not in self.isa:
                notes.append("no AVX-512")
            notes.append("VNNI" if self.vnni else "no VNNI")
        return f"{self.model} ({self.arch}, {self.cores} cores; {feats}" + (f"; {', '.join(notes)})" if notes else ")")


def cpu_info(cpuinfo_text: str | None = None) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` (or ``cpuinfo_text``) for the model name and the ISA flags of the first
    processor; elsewhere (no /proc) only ``platform`` is used and ``isa`` is empty."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo_text = ""
    model, flags = "", set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuInfo(model=model or platform.processor() or platform.machine(), cores=os.cpu_count() or 1,
                   arch=platform.machine(), isa=tuple(f for f in ISA_FEATURES if f in flags))


def library_versions() -> dict[str, str | None]:
    """Installed versions of ``LIBRARIES`` (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict:
    """CPU (model, cores, arch, ISA, VNNI), platform, Python, library versions and the CUDA device
    (None without one): what a benchmark or results file records about where it ran."""
    cpu = cpu_info()
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    libs = library_versions()
    return {"cpu": cpu.model, "cores": cpu.cores, "arch": cpu.arch, "isa": list(cpu.isa), "vnni": cpu.vnni,
            "cpu_summary": cpu.summary(), "platform": platform.platform(), "python": platform.python_version(),
            "libraries": libs, "torch": libs.get("torch"), "cuda": cuda}
