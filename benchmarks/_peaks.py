"""Peak FLOP/s of GPUs and CPUs, for the achieved fraction of peak that `speed.py` reports.

CPU peak = threads x clock x FLOPs per cycle per core, from /proc/cpuinfo: the clock is the
``cpu MHz`` it reports (a VM's nominal clock: boost is not counted); FLOPs per cycle are two
FMA pipes x the fp32 lanes of the widest vector unit x 2 (multiply and add): AVX2 (256-bit,
8 lanes) 32, AVX-512 64 (an upper bound on AMD Zen 4, which runs 512-bit ops on 256-bit pipes:
32 there). bf16: AMX tiles 1024 FLOP/cycle/core (Sapphire Rapids), AVX512_BF16's vdpbf16ps
twice the fp32 rate; without either, bf16 math runs as fp32 (the fp32 peak).
"""
from __future__ import annotations

import os

import torch

# Dense peak FLOP/s (bf16 tensor core, tf32 tensor core, fp32 non-tensor) from NVIDIA's data sheets:
# the H100 and H200 data sheets quote tensor-core numbers *with* 2:4 sparsity, halved here (H100 SXM
# bf16 1,979 -> 989.5 T, tf32 989 -> 494.5 T, fp32 67 T; H100 PCIe 1,513 / 756 / 51; H100 NVL and H200
# NVL 1,671 / 835 / 60; H200 SXM and GH200 as H100 SXM); A100 (dense in its data sheet) 312 / 156 /
# 19.5. Matched as substrings of torch.cuda.get_device_name, most specific first ("NVIDIA H100 80GB
# HBM3" is the SXM part; "NVIDIA GH200 480GB" must not match "H200"). Other devices: no peak.
PEAKS = (("GH200", (989.5e12, 494.5e12, 67e12)), ("H200 NVL", (835.5e12, 417.5e12, 60e12)),
         ("H200", (989.5e12, 494.5e12, 67e12)), ("H100 PCIe", (756.5e12, 378e12, 51e12)),
         ("H100 NVL", (835.5e12, 417.5e12, 60e12)), ("H100", (989.5e12, 494.5e12, 67e12)),
         ("A100", (312e12, 156e12, 19.5e12)))


def peak_entry(name: str):
    """``(key, (bf16, tf32, fp32))`` of the first `PEAKS` key found in device name ``name``, or None."""
    return next(((key, peaks) for key, peaks in PEAKS if key in name), None)


def peak_flops(device, dtype) -> float | None:
    """The device's dense peak for ``dtype`` ("bf16"; "fp32" counts TF32 when cuDNN may use it for
    convolutions, its default); None off-GPU or for a device not in `PEAKS`."""
    device = torch.device(device)
    if device.type == "cpu":
        peak = cpu_peak()
        return None if peak is None else peak["bf16" if dtype == "bf16" else "fp32"]
    if device.type != "cuda":
        return None
    entry = peak_entry(torch.cuda.get_device_name(device))
    if entry is None:
        return None
    bf16, tf32, fp32 = entry[1]
    return bf16 if dtype == "bf16" else (tf32 if torch.backends.cudnn.allow_tf32 else fp32)


def peak_info(device) -> dict:
    """What the fractions of peak are relative to (stored in the JSON)."""
    device = torch.device(device)
    if device.type == "cpu":
        peak = cpu_peak()
        return dict(source=None, note="no clock or vector flags in /proc/cpuinfo") if peak is None \
            else dict(source="cpu", **peak)
    if device.type != "cuda":
        return dict(source=None, note="no peak off-GPU")
    name = torch.cuda.get_device_name(device)
    entry = peak_entry(name)
    if entry is None:
        return dict(source=None, note=f"unknown peak: {name!r} is not in _peaks.PEAKS")
    return dict(source=entry[0], bf16=peak_flops(device, "bf16"), fp32=peak_flops(device, "fp32"),
                fp32_counts_tf32=bool(torch.backends.cudnn.allow_tf32),
                note="dense tensor-core peaks from NVIDIA data sheets (sparsity figures halved)")


def cpu_peak(threads: int | None = None, cpuinfo: str = "/proc/cpuinfo") -> dict | None:
    """fp32 and bf16 peak FLOP/s of ``threads`` cores (default ``torch.get_num_threads()``),
    with how they were derived; None when /proc/cpuinfo lacks the clock or the flags."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), None)
    mhz = next((float(line.split(":", 1)[1]) for line in text.splitlines()
                if line.startswith("cpu MHz")), None)
    if flags is None or mhz is None:
        return None
    threads = threads or torch.get_num_threads()
    width = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    fp32_cycle = 2 * width * 2
    bf16_cycle = 1024 if "amx_bf16" in flags else 2 * fp32_cycle if "avx512_bf16" in flags else fp32_cycle
    hz = mhz * 1e6
    return dict(fp32=threads * hz * fp32_cycle, bf16=threads * hz * bf16_cycle, threads=threads,
                ghz=round(mhz / 1e3, 3), fp32_flop_per_cycle=fp32_cycle, bf16_flop_per_cycle=bf16_cycle,
                affinity_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                note=f"{threads} thread(s) x {mhz / 1e3:.2f} GHz (/proc/cpuinfo) x FLOP/cycle: fp32 "
                     f"{fp32_cycle} (2 FMA pipes x {width} lanes x 2), bf16 {bf16_cycle}")
