"""The per-channel delay of :mod:`spikedelay.ops.channel_delay` in torch ops: the reference.

Any device and dtype. A depthwise ``conv2d`` (``groups=C``) on the channels-last view of the
``(B, T, C)`` layout: that layout *is* the memory of a ``(B, C, 1, T)`` image in channels-last
order, so the convolution reads and writes it without the two transposes a ``conv1d`` needs.
The backward is the convolution's own (``aten.convolution_backward``), so nothing is recomputed.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _image(x: Tensor, left: int, right: int) -> Tensor:
    return F.pad(x, (0, 0, left, right)).permute(0, 2, 1).unsqueeze(2)  # (B, C, 1, T+l+r) view


def _filters(kernel: Tensor) -> Tensor:
    n_c, taps = kernel.shape
    return kernel.reshape(n_c, 1, 1, taps).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def channel_delay_forward(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    y = F.conv2d(_image(x, left, right), _filters(kernel), groups=kernel.shape[0])
    return y.squeeze(2).permute(0, 2, 1)


@torch.no_grad()
def channel_delay_backward(x: Tensor, kernel: Tensor, grad: Tensor, left: int, right: int,
                           want_x: bool, want_kernel: bool) -> tuple[Tensor | None, Tensor | None]:
    image, filters = _image(x, left, right), _filters(kernel)
    grad_image = grad.permute(0, 2, 1).unsqueeze(2)
    gx, gw, _ = torch.ops.aten.convolution_backward(
        grad_image, image, filters, None, [1, 1], [0, 0], [1, 1], False, [0, 0],
        kernel.shape[0], [want_x, want_kernel, False])
    if gx is not None:  # (B, C, 1, T+l+r) → (B, T, C), the padding's steps dropped
        gx = gx.squeeze(2).permute(0, 2, 1)[:, left:left + x.shape[1]]
    if gw is not None:
        gw = gw.reshape(kernel.shape)
    return gx, gw
