"""Reductions inside one mmcv transformer layer (mmseg ViT's ``TransformerEncoderLayer``: ``norm1``, ``attn``,
``norm2``, ``ffn``), with the layer's own modules: between its attention and its MLP (importance-ranked reducers,
EViT-style), or around its sub-blocks (``per_sub_block`` reducers)."""
import torch

from ..phases import BACKBONE_REDUCED, phase
from .span import ReductionStack


def attention_with_weights(attn, x):
    """mmcv ``MultiheadAttention`` on x: (B, N, C) without its residual, and the attention weights averaged over
    heads, (B, N, N). Same computation as ``attn(x, identity=0)``."""
    q = x.transpose(0, 1) if attn.batch_first else x
    out, weights = attn.attn(q, q, q, need_weights=True, average_attn_weights=True)
    if attn.batch_first:
        out = out.transpose(0, 1)
    return attn.dropout_layer(attn.proj_drop(out)), weights


def reduce_inside_layer(layer, x, stage: str, reduce):
    """The layer with ``reduce(x, attention (B, N, N))`` between its attention (in phase ``stage``) and its MLP (in
    the reduced span)."""
    with phase(stage):
        z, attn = attention_with_weights(layer.attn, layer.norm1(x))
    x = reduce(x + z, attn)
    with phase(BACKBONE_REDUCED):
        return layer.ffn(layer.norm2(x), identity=x)


def reduce_around_sub_blocks(layer, x, reducer, n_extra: int, grid):
    """The layer with the reducer around its declared ``sub_blocks`` (attention and / or MLP): the sub-block's
    LayerNorm'd input is reduced, the sub-block runs on it, its output (no residual) is restored and added. Extra
    tokens are never reduced."""
    zero = x.new_zeros(())
    for name, norm, block in (('attention', layer.norm1, layer.attn), ('mlp', layer.norm2, layer.ffn)):
        y = norm(x)
        if name not in reducer.sub_blocks:
            x = x + block(y, identity=zero)
            continue
        stack = ReductionStack(reducer, grid)
        z = block(torch.cat([y[:, :n_extra], stack.reduce(y[:, n_extra:])], 1), identity=zero)
        x = x + torch.cat([z[:, :n_extra], stack.restore(z[:, n_extra:]).flatten(1, 2)], 1)
    return x
