"""Pure window functions of the Swin host (no module state, no reduction logic): partition / reverse, the relative
position index and bias-table resize, the SW-MSA mask, and ``WindowMSA``'s attention with a given bias. The glue that
runs them inside an upstream ``SwinTransformer`` is :mod:`mmtokred.hosts.swin`."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_VALUE = -100.0   # Swin's own value for masked attention logits


def window_partition(x: Tensor, window: int) -> Tensor:
    """x: (B, H, W, C) with H, W multiples of ``window`` -> (B * nW, window, window, C), windows row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C)


def window_reverse(windows: Tensor, window: int, H: int, W: int) -> Tensor:
    """windows: (B * nW, window, window, C) -> (B, H, W, C); inverse of :func:`window_partition`."""
    C = windows.shape[-1]
    x = windows.reshape(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window: int, device=None) -> Tensor:
    """(window^2, window^2) index into a (2 window - 1)^2 bias table: the rule of mmseg/mmdet ``WindowMSA``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + window - 1            # (2, N, N), each in [0, 2 window - 2]
    return (rel[0] * (2 * window - 1) + rel[1]).to(device)


def resize_bias_table(table: Tensor, window: int, new_window: int) -> Tensor:
    """table: ((2K-1)^2, heads) -> ((2k-1)^2, heads), bilinear (align_corners=False) on the (2K-1) x (2K-1) grid
    of offsets, computed in fp32 (the reference's resize)."""
    L, heads = table.shape
    side = 2 * window - 1
    if L != side * side:
        raise ValueError(f'relative_position_bias_table has {L} rows, expected (2*{window}-1)^2 = {side * side}')
    grid = table.float().t().reshape(1, heads, side, side)
    new_side = 2 * new_window - 1
    out = F.interpolate(grid, size=(new_side, new_side), mode='bilinear', align_corners=False)
    return out.reshape(heads, new_side * new_side).t().to(table.dtype)


def shift_window_mask(H: int, W: int, window: int, shift: int, mask_shift: Optional[int] = None,
                      device=None) -> Tensor:
    """(nW, window^2, window^2) additive SW-MSA mask of an (H, W) map rolled by ``shift``: 0 inside a region,
    -100 between regions that the cyclic roll brought together. ``mask_shift`` builds the regions for another
    shift (the reference's stale mask; default: ``shift``)."""
    s = shift if mask_shift is None else mask_shift
    region = torch.zeros(H, W, device=device)
    slices = (slice(0, -window), slice(-window, -s), slice(-s, None))
    label = 0
    for hs in slices:
        for ws in slices:
            region[hs, ws] = label
            label += 1
    windows = window_partition(region[None, :, :, None], window).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


def window_attention(w_msa: nn.Module, x: Tensor, bias: Tensor, mask: Optional[Tensor]) -> Tensor:
    """mmseg/mmdet ``WindowMSA.forward`` with a given relative position bias.

    x: (B_w, N, C) windows; bias: (heads, N, N); mask: (B_w, N, N) additive or None. Same arithmetic as upstream
    (explicit matmuls and softmax: the baseline's attention kernel)."""
    B_w, N, C = x.shape
    heads = w_msa.num_heads
    qkv = w_msa.qkv(x).reshape(B_w, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * w_msa.scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
    if mask is not None:
        attn = attn + mask.unsqueeze(1).to(attn.dtype)
    attn = w_msa.attn_drop(w_msa.softmax(attn))
    out = (attn @ v).transpose(1, 2).reshape(B_w, N, C)
    return w_msa.proj_drop(w_msa.proj(out))
