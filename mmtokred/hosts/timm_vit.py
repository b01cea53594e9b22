"""Host for timm's ``VisionTransformer`` (DeiT, ViT): classification with token reduction.

``insert_token_reduction(model, reducer, reduce_after_layer)`` puts a reduction into a built timm model, in place,
without touching its parameters (the state dict stays timm's, so official checkpoints load before or after): the
model's class is swapped for a subclass whose ``forward_features`` runs the reduction; timm's own modules do the
rest.

* Reducers that merge inside every block (declared ``per_block``: ToMe ``dict(type='ToMe', mode='layer', r=8)``,
  as its paper uses it): in every block, between attention and MLP, the reducer's ``block_merge`` merges
  ``block_schedule(depth)[i]`` tokens matched on the attention keys averaged over heads, the cls token protected,
  sizes tracked, with proportional attention when the reducer declares ``size_bias``. ``reduce_after_layer`` is
  None.
* Grid reducers (Token Adapter, Expediting, pooling): the patch tokens after block ``reduce_after_layer`` (-1: the
  patch embeddings) are reduced on their (H, W) grid and the remaining blocks run on the reduced set (the shared
  span driver); prefix tokens bypass the reducer. A classifier reads the cls token (or pools the tokens), so
  nothing is restored.

No reducer, or a disabled one (r = 0, ratio 0), is exactly timm's forward. Only the per-block attention is
re-written here (it needs the keys and the size bias inside attention), with the block's own modules
(``attn.qkv``, ``attn.proj``, norms, MLP): a Token Compensator on ``attn.qkv`` therefore acts in every mode.
"""
from functools import lru_cache
from typing import Optional

import torch.nn.functional as F

from ..phases import BACKBONE_REDUCED, REDUCE, phase
from ..reducers import build_reducer
from .placement import check_capabilities, check_restore_site, check_sites
from .registry import Host, ReductionPlan, packed_qv_slot, register_host, set_plan
from .span import run_span

HOST_NAME = 'timm VisionTransformer (DeiT, ViT classifiers)'


def _upstream():
    from timm.models.vision_transformer import VisionTransformer
    return (VisionTransformer,)


def plan_timm(depth: int, reducer, reduce_after_layer: Optional[int] = None, restore_after_layer=None,
              restore_site: str = 'backbone', dynamic_img_size: bool = False) -> ReductionPlan:
    settings = dict(reducer=reducer, reduce_after_layer=reduce_after_layer)
    reducer = build_reducer(reducer)
    check_restore_site(restore_site, ('backbone',), ' on a classifier (nothing is restored)')
    if restore_after_layer is not None:
        raise ValueError('restore_after_layer must be None on a classifier (it reads the reduced tokens), got '
                         f'{restore_after_layer!r}')
    if reducer is None:
        return ReductionPlan(HOST_NAME, depth, settings=settings)
    check_capabilities(reducer, 'the timm classification host', provides_importance=False,
                       supports_sub_block=False, supports_per_block=True)
    if reducer.per_block:
        if reduce_after_layer is not None:
            raise ValueError("ToMe mode='layer' reduces in every block: leave reduce_after_layer None")
        return ReductionPlan(HOST_NAME, depth, (reducer,), spans=tuple(reducer.block_schedule(depth)),
                             settings=settings)
    if not reducer.returns_grid:
        raise ValueError(f'{type(reducer).__name__} returns a token set: on a timm classifier ToMe runs in every '
                         "block: use mode='layer' with r; other reducers must return a grid")
    sites = check_sites(reduce_after_layer, depth - 2, f'{depth}-block model', '-1: the patch embeddings',
                        allow_list=False)
    if dynamic_img_size:
        raise ValueError('grid reducers need a fixed patch grid: dynamic_img_size=True is not supported')
    return ReductionPlan(HOST_NAME, depth, (reducer,), tuple(sites), settings=settings)


def _plan_cfg(cfg: dict, **settings) -> ReductionPlan:
    import timm
    return _plan_module(timm.create_model(cfg['name'], pretrained=False, **{k: v for k, v in cfg.items()
                                                                            if k not in ('type', 'name')}),
                        **settings)


def _plan_module(model, **settings) -> ReductionPlan:
    return plan_timm(len(model.blocks), dynamic_img_size=getattr(model, 'dynamic_img_size', False), **settings)


@lru_cache(maxsize=None)
def _reduced_class(cls):
    """timm's class with ``forward_features`` swapped (same name, same state dict)."""
    class ReducedTimmViT(cls):
        forward_features = reduced_forward_features
    ReducedTimmViT.__name__ = ReducedTimmViT.__qualname__ = cls.__name__
    return ReducedTimmViT


def _apply(model, plan: ReductionPlan):
    if type(model).forward_features is not reduced_forward_features:
        model.__class__ = _reduced_class(type(model))
    set_plan(model, plan)


def reduced_forward_features(model, x, *args, **kwargs):
    """timm's ``forward_features`` with the planned reduction. x: (B, 3, H, W) -> (B, N_r, C). Attention masks
    (timm's ``attn_mask`` / ``is_causal``) do not survive a change of the token set: refused."""
    plan = model.token_reduction.plan
    if not plan.active:
        return super(type(model), model).forward_features(x, *args, **kwargs)
    if any(a is not None and a is not False for a in (*args, *kwargs.values())):
        raise ValueError('token reduction does not support attn_mask / is_causal (the token set changes)')
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    n_prefix, reducer = model.num_prefix_tokens, plan.reducer
    if reducer.per_block:
        size = None
        with phase(BACKBONE_REDUCED):
            for block, r in zip(model.blocks, plan.spans):
                x, size = merge_block(block, x, size, r, n_prefix, reducer)
    else:
        grid = model.patch_embed.grid_size
        if x.shape[1] - n_prefix != grid[0] * grid[1]:
            raise ValueError(f'expected {grid[0]}x{grid[1]} patch tokens, got {x.shape[1] - n_prefix}')
        x = run_span(model.blocks, x, plan, n_prefix, grid)[0]
    return model.norm(x)


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


def merge_block(block, x, size, r, n_prefix, reducer):
    """One timm ``Block`` with the reducer's per-block merge between attention and MLP. x: (B, N, C), size:
    (B, N, 1) or None. Returns (x (B, N - r', C), size)."""
    out, keys = attention_with_keys(block.attn, block.norm1(x), size if reducer.size_bias else None)
    x = x + block.drop_path1(block.ls1(out))
    if r > 0:
        with phase(REDUCE):
            if n_prefix > 1:
                raise ValueError('ToMe here protects one prefix token (cls); this model has '
                                 f'{n_prefix} (distillation / register tokens)')
            x, size = reducer.block_merge(keys, r, class_token=n_prefix == 1)(x, size)
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x)))), size


def remaining_tokens(num_tokens: int, r_per_block, n_prefix: int = 1):
    """Tokens left after each block with ToMe's clipping (a check of the schedule without running a model)."""
    left = []
    for r in r_per_block:
        num_tokens -= min(r, (num_tokens - n_prefix) // 2)
        left.append(num_tokens)
    return left


def _qv_slots(model):
    return [packed_qv_slot(block.attn.qkv, 'weight', block.attn.qkv.in_features, f'blocks[{i}].attn.qkv')
            for i, block in enumerate(model.blocks)]


def _distill_output(model, x):
    if getattr(model, 'num_classes', 0):
        return model(x), 'logits'
    return model.forward_features(x), 'features'


register_host(Host(HOST_NAME, _upstream, ('TimmVisionTransformer',), _plan_cfg, _plan_module, _apply,
                   qv_slots=_qv_slots, distill_output=_distill_output, family='timm.VisionTransformer'))
