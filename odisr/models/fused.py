"""Convolutions and linear layers with their next element-wise step fused in, on oneDNN kernels where possible.

``conv2d_then(x, …, post="gelu")`` is ``gelu(conv2d(x, …))``; ``post="add"`` / ``"mul"`` add / multiply a tensor
``other`` of the output's shape; ``linear(x, w, b)`` is ``F.linear``. On the CPU (:attr:`ExecutionPolicy.fused_conv`)
they run on oneDNN's pointwise-fused kernels, the ones TorchInductor emits for the same patterns
(``torch.ops.mkldnn._convolution_pointwise`` / ``_linear_pointwise``):

* the element-wise step is applied to each output block while it is still in cache, so the convolution's output
  is not written, read back and written again (one pass over the feature map instead of two);
* a 1×1 convolution of a channels-last map is a matrix product of its ``(B·H·W, C)`` pixel rows, and oneDNN's
  linear kernel computes it faster than its convolution kernel, with the same values.

Measured on CAMixerSR-S feature maps (36 × 256 × 512, float32, 2 threads, CPU time, min of 30; shared machine):
1×1 conv 9.8–12.8 ms → 6.7–7.7 ms as a linear kernel; 1×1 conv + residual add 40.5 ms as two ops → 10–11 ms;
depth-wise 3×3 conv + GELU 12.3 → 10.0 ms; tokens × ``nn.Linear`` 14.4 → 7.5 ms. Sums, products and matrix
products are bit-identical to the plain ops on these shapes (a matrix product with a reduction of 8 differed by
1e-6); GELU uses oneDNN's erf, within 2e-6 of ``F.gelu`` (``tests/test_camixer_fast.py``).

The oneDNN kernels are used only where they compute what the plain ops would: float32, channels-last input and
``other``, no autocast, no autograd graph being recorded (the kernels have no backward), not under
``torch.compile`` (TorchInductor makes its own fusions). Everywhere else — training, CUDA, bf16, NCHW — the plain
ops run.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import conv_flop_count, mm_flop, register_flop_formula

from odisr.models.execution import execution_policy

__all__ = ["Post", "conv2d_then", "fused_kernel_available", "linear"]

Post = Literal["none", "gelu", "add", "mul"]

_AVAILABLE = torch.backends.mkldnn.is_available() and all(
    hasattr(torch.ops.mkldnn, op) for op in ("_convolution_pointwise", "_linear_pointwise")
)


def fused_kernel_available() -> bool:
    """True when this PyTorch build has oneDNN's fused convolution and linear kernels."""
    return _AVAILABLE


def conv2d_then(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
    post: Post = "none",
    other: Tensor | None = None,
) -> Tensor:
    """``post(F.conv2d(x, weight, bias, stride, padding, dilation, groups))`` — see the module docstring.

    ``x`` ``(B, C_in, H, W)``; ``other`` (for ``"add"``/``"mul"``) ``(B, C_out, H', W')`` like the output.
    Raises ``ValueError`` for an unknown ``post`` or a missing ``other``.
    """
    if post not in ("none", "gelu", "add", "mul"):
        raise ValueError(f"unknown post {post!r}; use 'none', 'gelu', 'add' or 'mul'")
    if (post in ("add", "mul")) != (other is not None):
        raise ValueError(f"post={post!r} {'needs' if other is None else 'takes no'} `other` tensor")
    if _fusable(x, weight, other):
        pointwise = weight.shape[-2:] == (1, 1) and groups == 1 and set(stride) == {1} and set(padding) == {0}
        if pointwise and post != "mul":
            return _pixel_rows_linear(x, weight.flatten(1), bias, post, other)
        if post != "none":
            args = (list(padding), list(stride), list(dilation), groups)
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *args, post, [], "none")
            convolution = torch.ops.mkldnn._convolution_pointwise.binary
            return convolution(x, other, weight, bias, *args, post, None, None, [], None)
    return _then(F.conv2d(x, weight, bias, stride, padding, dilation, groups), post, other)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` ``(…, in)`` (oneDNN's linear kernel where :func:`_fusable`)."""
    if x.is_contiguous() and _fusable(x, weight, None, layout=torch.contiguous_format):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _pixel_rows_linear(x: Tensor, weight: Tensor, bias: Tensor | None, post: Post, other: Tensor | None) -> Tensor:
    """A 1×1 convolution of channels-last ``x`` as a linear layer over its ``(B·H·W, C_in)`` pixel rows."""
    b, _, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # a view: channels-last memory is these rows
    if other is None:
        out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, post, [], "none" if post == "gelu" else "")
    else:
        other_rows = other.permute(0, 2, 3, 1).reshape(-1, other.shape[1])
        out = torch.ops.mkldnn._linear_pointwise.binary(rows, other_rows, weight, bias, post)
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def _then(y: Tensor, post: Post, other: Tensor | None) -> Tensor:
    if post == "gelu":
        return F.gelu(y)
    if post == "add":
        return y + other
    if post == "mul":
        return y * other
    return y


def _fusable(
    x: Tensor, weight: Tensor, other: Tensor | None, layout: torch.memory_format = torch.channels_last
) -> bool:
    """Whether the oneDNN kernels compute exactly what the plain ops would here (module docstring)."""
    if not _AVAILABLE or torch.compiler.is_compiling():  # (TorchInductor cannot trace these kernels)
        return False
    if x.device.type != "cpu" or not execution_policy(x.device).fused_conv:
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return False
    tensors = (x, weight) if other is None else (x, weight, other)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    # oneDNN writes channels-last output for channels-last input, and reads `other` in the output's layout
    return x.is_contiguous(memory_format=layout) and (
        other is None or (other.dtype == x.dtype and other.is_contiguous(memory_format=layout))
    )


if _AVAILABLE:  # so that FlopCounterMode counts the fused kernels like the plain ops

    @register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
    def _fused_conv_flops(*shapes: object, out_shape: list[int], **kwargs: object) -> int:
        # (X, W, B, padding, stride, dilation, groups, attr, scalars, algorithm) or, `.binary`, (X, other, W, …)
        x_shape, w_shape = shapes[0], shapes[2 if len(shapes) > 10 else 1]
        return conv_flop_count(x_shape, w_shape, out_shape)  # type: ignore[arg-type]

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _fused_linear_flops(*shapes: object, out_shape: list[int], **kwargs: object) -> int:
        # (X, W, B, attr, scalars, algorithm) or, `.binary`, (X, other, W, B, attr); W is (out, in)
        x_shape, w_shape = shapes[0], shapes[2 if len(shapes) == 5 else 1]
        rows = 1
        for size in x_shape[:-1]:  # type: ignore[union-attr]
            rows *= size
        return mm_flop([rows, x_shape[-1]], [w_shape[1], w_shape[0]])  # type: ignore[index]
