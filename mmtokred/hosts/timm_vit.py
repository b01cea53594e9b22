"""Host adapter for timm's ``VisionTransformer`` (DeiT, ViT): classification with token reduction.

:func:`configure_timm_reduction` puts a reduction into a built timm model, in place, without touching its
parameters (the state dict stays timm's, so official checkpoints load before or after):

* ToMe as its paper uses it (``dict(type='ToMe', mode='layer', r=8)``): in every block, between attention and MLP,
  ``r`` tokens are merged by bipartite soft matching on the attention keys averaged over heads, the cls (and other
  prefix) tokens protected, sizes tracked, and with proportional attention (log size added to the attention
  logits). r may be a list with one value per block.
* Grid reducers (Token Adapter, Expediting, pooling): the patch tokens after block ``reduce_after_layer`` (-1: the
  patch embeddings) are reduced on their (H, W) grid and the remaining blocks run on the reduced set; prefix tokens
  bypass the reducer. A classifier reads the cls token (or pools the tokens), so nothing is restored.

No reducer, or a disabled one (r = 0, ratio 0), is exactly timm's forward. The blocks keep their own modules
(``attn.qkv``, ``attn.proj``, norms, MLP): only ToMe's block forward is re-written here, because it needs the keys
and the size bias inside attention; a Token Compensator on ``attn.qkv`` therefore acts in every mode.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..analysis.phases import BACKBONE_FULL, BACKBONE_REDUCED, REDUCE, phase
from ..reducers import bipartite_soft_matching, build_reducer
from .span import ReductionStack, check_capabilities


def _block_r(reducer, depth):
    """r per block for a reducer that merges inside every block (declared ``per_block``), else None."""
    return reducer.layer_r(depth) if reducer.per_block else None


def configure_timm_reduction(model, reducer=None, reduce_after_layer: Optional[int] = None):
    """Insert (or with ``reducer=None`` remove) a reduction in a timm ``VisionTransformer``, in place.

    Args:
        model: ``timm.models.vision_transformer.VisionTransformer``.
        reducer: reducer config or instance. ToMe with ``mode='layer'`` reduces in every block; grid reducers need
            ``reduce_after_layer``.
        reduce_after_layer: 0-based block after which a grid reducer runs (-1: on the patch embeddings).
    Returns the model.
    """
    from timm.models.vision_transformer import VisionTransformer
    if not isinstance(model, VisionTransformer):
        raise TypeError(f'configure_timm_reduction needs a timm VisionTransformer, got {type(model).__name__}')
    depth = len(model.blocks)
    reducer = build_reducer(reducer)
    per_block = None
    if reducer is not None:
        check_capabilities(reducer, 'the timm classification host', provides_importance=False,
                           supports_sub_block=False, supports_per_block=True)
        per_block = _block_r(reducer, depth)
        if per_block is None:
            if not reducer.returns_grid:
                raise ValueError(f'{type(reducer).__name__} returns a token set: on a timm classifier ToMe runs in '
                                 "every block: use mode='layer' with r; other reducers must return a grid")
            if not isinstance(reduce_after_layer, int) or isinstance(reduce_after_layer, bool) or \
                    not -1 <= reduce_after_layer < depth - 1:
                raise ValueError(f'reduce_after_layer must be an integer in [-1, {depth - 2}] for this {depth}-block '
                                 f'model (-1: the patch embeddings), got {reduce_after_layer!r}')
        elif reduce_after_layer is not None:
            raise ValueError("ToMe mode='layer' reduces in every block: leave reduce_after_layer None")
        if getattr(model, 'dynamic_img_size', False):
            raise ValueError('grid reducers need a fixed patch grid: dynamic_img_size=True is not supported')
    model.token_reducer = reducer          # no parameters or buffers: the state dict is unchanged
    model.reduce_after_layer = reduce_after_layer
    if reducer is None or not reducer.enabled:
        model.__dict__.pop('forward_features', None)   # timm's own forward
    else:
        model.forward_features = lambda x, **kw: reduced_forward_features(model, x, **kw)
    return model


def reduced_forward_features(model, x, attn_mask=None, is_causal=False):
    """timm's ``forward_features`` with the configured reduction. x: (B, 3, H, W) -> (B, N_r, C). Attention masks
    (timm's ``attn_mask`` / ``is_causal``) do not survive a change of the token set: refused."""
    if attn_mask is not None or is_causal:
        raise ValueError('token reduction does not support attn_mask / is_causal (the token set changes)')
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    x = model.norm_pre(x)
    n_prefix = model.num_prefix_tokens
    reducer = model.token_reducer
    per_block = _block_r(reducer, len(model.blocks))
    if per_block is not None:
        size = None
        with phase(BACKBONE_REDUCED):
            for block, r in zip(model.blocks, per_block):
                x, size = tome_block(block, x, size, r, n_prefix, reducer.prop_attn)
    else:
        grid = model.patch_embed.grid_size
        site = model.reduce_after_layer
        if site == -1:
            x = _reduce_grid(reducer, x, n_prefix, grid)
        for i, block in enumerate(model.blocks):
            with phase(BACKBONE_FULL if i <= site else BACKBONE_REDUCED):
                x = block(x)
            if i == site:
                x = _reduce_grid(reducer, x, n_prefix, grid)
    return model.norm(x)


def _reduce_grid(reducer, x, n_prefix, grid):
    tokens = x[:, n_prefix:]
    B, N, C = tokens.shape
    if N != grid[0] * grid[1]:
        raise ValueError(f'expected {grid[0]}x{grid[1]} patch tokens, got {N}')
    reduced = ReductionStack(reducer, grid).reduce(tokens)    # phase, fp32 under autocast
    return torch.cat([x[:, :n_prefix], reduced], 1)


def attention_with_keys(attn, x, size=None):
    """timm ``Attention`` on x: (B, N, C), with ToMe's proportional attention (``size``: (B, N, 1) token sizes,
    log size added to the logits) and returning the keys averaged over heads, (B, N, head_dim), as ToMe's metric.
    Uses the module's own qkv / norms / proj."""
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, 'gate', None) is not None else None
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = None
    if size is not None:
        bias = size.log()[:, None, None, :, 0].to(q.dtype)       # (B, 1, 1, N)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                         dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = attn.norm(out.transpose(1, 2).reshape(B, N, attn.attn_dim))
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    return out, k.mean(1)


def tome_block(block, x, size, r, n_prefix, prop_attn=True):
    """One timm ``Block`` with ToMe between attention and MLP. x: (B, N, C), size: (B, N, 1) or None.
    Returns (x (B, N - r', C), size)."""
    out, keys = attention_with_keys(block.attn, block.norm1(x), size if prop_attn else None)
    x = x + block.drop_path1(block.ls1(out))
    if r > 0:
        with phase(REDUCE):
            if n_prefix > 1:
                raise ValueError('ToMe here protects one prefix token (cls); this model has '
                                 f'{n_prefix} (distillation / register tokens)')
            merge, _ = bipartite_soft_matching(keys, r, class_token=n_prefix == 1)
            x, size = merge(x, size)
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x)))), size


def remaining_tokens(num_tokens: int, r_per_block, n_prefix: int = 1):
    """Tokens left after each block with ToMe's clipping (a check of the schedule without running a model)."""
    left = []
    for r in r_per_block:
        num_tokens -= min(r, (num_tokens - n_prefix) // 2)
        left.append(num_tokens)
    return left


__all__ = ['configure_timm_reduction', 'reduced_forward_features', 'tome_block', 'attention_with_keys',
           'remaining_tokens']


def build_timm_classifier(model_cfg: dict, checkpoint: Optional[str] = None):
    """A timm ViT from ``dict(type='TimmVisionTransformer', name='deit_base_patch16_224', **timm kwargs)``, with
    no download (``pretrained=False``); ``checkpoint``: a trusted file holding the weights (a plain state dict, or
    one under 'model' / 'state_dict' as DeiT and timm releases store them), loaded strictly. Eval mode."""
    import timm
    cfg = dict(model_cfg)
    if cfg.pop('type', None) != 'TimmVisionTransformer':
        raise ValueError(f"classifier model type must be 'TimmVisionTransformer', got {model_cfg.get('type')!r}")
    name = cfg.pop('name')
    model = timm.create_model(name, pretrained=False, **cfg)
    if checkpoint:
        state = torch.load(checkpoint, map_location='cpu', weights_only=False)
        for key in ('model', 'state_dict'):
            if isinstance(state, dict) and key in state:
                state = state[key]
        model.load_state_dict(state, strict=True)
    return model.eval()


def build_classifier(cfg, checkpoint: Optional[str] = None):
    """A classifier config -> model: ``model`` (see :func:`build_timm_classifier`), optional ``reduction``
    (arguments of :func:`configure_timm_reduction`) and optional ``compensator`` = dict(checkpoint=FILE,
    source=0, target=None (default: the degree equal to ``reduction``), scale=None, mode='fold' | 'branch').
    Folding happens after the weights are loaded (exact, zero run-time cost)."""
    from ..compensators import TokenCompensator, apply_compensator, find_degree
    model = build_timm_classifier(cfg['model'], checkpoint)
    reduction = cfg.get('reduction') or {}
    configure_timm_reduction(model, **reduction)
    comp_cfg = cfg.get('compensator')
    if comp_cfg:
        comp_cfg = dict(comp_cfg)
        comp = TokenCompensator.load(comp_cfg.pop('checkpoint'))
        target = find_degree(comp, reduction or None, len(model.blocks), comp_cfg.pop('target', None))
        mode = comp_cfg.pop('mode', 'fold')
        branch = apply_compensator(model, comp, comp_cfg.pop('source', 0), target, mode, comp_cfg.pop('scale', None))
        if comp_cfg:
            raise ValueError(f'compensator: unknown keys {sorted(comp_cfg)}; valid: checkpoint, source, target, '
                             'scale, mode')
        model.__dict__['compensator_branch'] = branch   # None when folded; never a submodule
    return model
