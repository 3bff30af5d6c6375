"""Peak FLOP/s of GPUs, for the achieved fraction of peak that `speed.py` reports."""
from __future__ import annotations

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
    if device.type != "cuda":
        return dict(source=None, note="no peak off-GPU")
    name = torch.cuda.get_device_name(device)
    entry = peak_entry(name)
    if entry is None:
        return dict(source=None, note=f"unknown peak: {name!r} is not in _peaks.PEAKS")
    return dict(source=entry[0], bf16=peak_flops(device, "bf16"), fp32=peak_flops(device, "fp32"),
                fp32_counts_tf32=bool(torch.backends.cudnn.allow_tf32),
                note="dense tensor-core peaks from NVIDIA data sheets (sparsity figures halved)")
