"""How a network runs on a device: layout, per-image evaluation, kernels, process settings — chosen per device.

These choices change speed, never the maths: every policy computes the same network, and outputs differ between
policies by float32 rounding only (≤ 1e-5 on the CAMixer fixtures, ``tests/test_camixer_fast.py``).

* **CPU** (oneDNN): activations and weights **channels-last**. The thin convolutions of CAMixer run faster in that
  layout (1×1: 4× faster than NCHW, measured), a channels-last map is already the ``(B·H·W, C)`` row matrix that
  ``F.layer_norm``, the linear kernels and the window partition read, and the window reverse writes it in 1.3 KiB
  contiguous runs (~20× faster than writing NCHW). Element-wise steps after a convolution run fused into it
  (``fused_conv``, :mod:`odisr.models.fused`). Batch-sensitive kernels run **one image at a time**: oneDNN picks
  its algorithm from the whole input shape, and the algorithms round differently, so an image's output would
  otherwise depend on the rest of its batch (``tests/test_camixersr.py::test_output_is_batch_independent``); on
  the CPU this costs nothing, because oneDNN parallelises within an image. The engine also keeps freed memory in
  the heap (``retain_heap``, :func:`retain_heap`).
* **CUDA**: activations and weights **NCHW**. On an H200, channels-last depth-wise convolutions take cuDNN's
  grouped direct kernel (4.9 ms per call on a 2048×1024 map) where NCHW takes PyTorch's native depth-wise kernel
  (1.0 ms), and channels-last cost 76 ms of layout copies per forward (``specs/GPU_MEASUREMENTS.md``); a whole
  CAMixerSR-S forward pass of 2048×1024 LR (γ = 0.5) took 0.363 s in NCHW, 0.776 s in channels-last.
  Per-image evaluation stays on by default, as measured on an H200 (``benchmarks/bench_camixer.py --device cuda``,
  section "batch independence", cuDNN deterministic, TF32 off, 2026-11-29): every operation of the network alone
  gives an image the same bits in a batch as alone, but the whole network evaluated batched differs by up to
  3.6e-7 from the image alone, per image it is identical (4 tiles of 288²: 0.085 s per image, 0.066 s batched).

:func:`use_policy` overrides the policy for a block of code (e.g. to time batched tiles on a GPU); model weights
follow :func:`execution_policy` of their device whenever the model is moved (``model.to(...)``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = ["ExecutionPolicy", "batched", "execution_policy", "prepare", "splits_batch", "use_policy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionPolicy:
    """Speed choices for one device type.

    ``memory_format``: layout of activations and 4-D weights (``torch.channels_last`` or ``torch.contiguous_format``).
    ``per_image``: evaluate batch-sensitive kernels (convolutions, tiny per-image heads) one image at a time, so
    that an image's output does not depend on the rest of its batch.
    ``fused_conv``: fuse the element-wise step after a convolution (GELU, residual add, gate multiply) into the
    convolution kernel (:mod:`odisr.models.fused`; oneDNN on the CPU).
    ``retain_heap``: keep freed activation memory in the process heap (:func:`retain_heap`).
    """

    memory_format: torch.memory_format
    per_image: bool
    fused_conv: bool = False
    retain_heap: bool = False


CPU_POLICY = ExecutionPolicy(memory_format=torch.channels_last, per_image=True, fused_conv=True, retain_heap=True)
CUDA_POLICY = ExecutionPolicy(memory_format=torch.contiguous_format, per_image=True)
_DEFAULTS = {"cpu": CPU_POLICY, "cuda": CUDA_POLICY}
_OVERRIDE: ContextVar[ExecutionPolicy | None] = ContextVar("odisr_execution_policy", default=None)


def execution_policy(device: torch.device | str) -> ExecutionPolicy:
    """The policy in force for ``device``: a :func:`use_policy` override, else the device type's default.

    Device types without a measured default (MPS, …) get the CUDA policy (NCHW, per image). Code being compiled
    (:mod:`odisr.models.compiled`) gets the default: TorchInductor bakes the policy into the compiled graph, and
    torch 2.11's Dynamo cannot read the override (``ContextVar.get`` breaks the graph there).
    """
    override = None if torch.compiler.is_compiling() else _OVERRIDE.get()
    if override is not None:
        return override
    return _DEFAULTS.get(torch.device(device).type, CUDA_POLICY)


@contextmanager
def use_policy(policy: ExecutionPolicy) -> Iterator[ExecutionPolicy]:
    """Within the context (this thread/task only), every device runs with ``policy``."""
    token = _OVERRIDE.set(policy)
    try:
        yield policy
    finally:
        _OVERRIDE.reset(token)


@contextmanager
def batched(device: torch.device | str) -> Iterator[ExecutionPolicy]:
    """Within the context, ``device``'s policy with batch-sensitive kernels evaluated on the whole batch.

    For training: per-image evaluation exists so that an *inference* result cannot depend on the rest of its batch;
    a training step's gradient is a batch statistic anyway, and the per-image loop multiplies the kernel launches
    and autograd nodes by the batch size (``benchmarks/bench_train.py``). A policy the caller set with
    :func:`use_policy` stays in force (e.g. to time or test training per image).
    """
    chosen = _OVERRIDE.get()
    with use_policy(chosen or replace(execution_policy(device), per_image=False)) as policy:
        yield policy


def splits_batch(x: Tensor) -> bool:
    """True when a batch-sensitive kernel must see the images of ``x`` ``(B, …)`` one at a time."""
    return x.shape[0] > 1 and execution_policy(x.device).per_image


def prepare(device: torch.device | str) -> ExecutionPolicy:
    """The policy for ``device`` (:func:`execution_policy`), after readying the process for heavy inference on it.

    Called by the tiling engine (:func:`odisr.upscale`, hence ``odisr run``/``evaluate``) before it runs a model;
    idempotent and cheap. A bare ``model(x)`` never changes process-wide settings: call this (or
    :func:`retain_heap`) yourself for the same effect in your own loop.
    """
    policy = execution_policy(device)
    if policy.retain_heap:
        retain_heap()
    return policy


_HEAP_RETAINED: bool | None = None
MMAP_THRESHOLD = 512 << 20
"""Allocations up to this size (bytes) come from the heap: a 36-channel float32 map of a 2048×1024 LR image."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap is returned to the system only beyond this size (bytes)."""


def retain_heap() -> bool:
    """Make glibc's malloc keep freed activation memory for reuse (once per process); True when in effect.

    A CPU forward pass allocates and frees tens of feature maps of 5–40 MB per block. With glibc's default,
    adaptive thresholds, freed memory at the top of the heap is handed back to the kernel after almost every block
    (``brk``) and mapped, page-faulted and zeroed again for the next: measured with CAMixerSR-S, 512×256 LR,
    2 threads, 0.7–0.8 M page faults and 1.6–2.0 s of system time per forward pass (of 9 s CPU time), none with the
    thresholds raised (``mallopt(M_MMAP_THRESHOLD, 512 MiB)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``); wall time
    4.6–4.9 s → 3.8–3.9 s. The authors' network gains even more in such a process (2.6–3.1 M faults, 6 s of system
    time; 9.8 s → 5.7 s). Peak memory is unchanged: the process keeps its peak instead of returning it between
    passes. Process-wide; a no-op off glibc (macOS, Windows, musl) and when the environment variable
    ``ODISR_RETAIN_HEAP=0`` is set (e.g. where ``MALLOC_TRIM_THRESHOLD_`` is tuned on purpose).
    """
    global _HEAP_RETAINED
    if _HEAP_RETAINED is None:
        _HEAP_RETAINED = _set_malloc_thresholds()
    return _HEAP_RETAINED


def _set_malloc_thresholds() -> bool:
    if os.environ.get("ODISR_RETAIN_HEAP", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    done = mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1 and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc thresholds raised for activation reuse: %s", done)
    return done
