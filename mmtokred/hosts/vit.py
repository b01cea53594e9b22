"""Host adapter for mmseg's plain ``VisionTransformer`` (Segmenter, DPT, ...).

Reduce after layer ``reduce_after_layer`` and restore after layer ``restore_after_layer`` (0-based layer indices,
the convention of ``out_indices``: the span that runs on fewer tokens is layers reduce_after_layer+1 ..
restore_after_layer). Paper conventions map as: Expediting's "cluster after layer alpha" (alpha layers at full
resolution) -> ``reduce_after_layer = alpha - 1``; Token Adapter's "inject before block L_b" -> ``L_b - 1``.
``reduce_after_layer = -1`` reduces the patch embeddings (after the position embedding and ``pre_norm``), before
the first layer: every layer then runs on the reduced tokens.
``reduce_after_layer`` may be a list: the reducer runs again at every listed layer on what is left (EViT's
pruning at layers 7, 13, 19; Token Adapter's layer-by-layer variant); the restores are undone in reverse order.

Reducers that need a host importance (EViT, MSTM, Token Adapter with ``importance='attention'``) run *inside*
the listed layer, after its attention and before its MLP, with the cls token's attention to the patches (mean over
heads) as the importance, as EViT does. They need ``with_cls_token=True``. Reducers declared ``per_sub_block``
(ToMe ``mode='sub_block'``) are applied around the attention and around the MLP of every layer of the span.

``restore_site``:
  * ``'backbone'``: restore the features after ``restore_after_layer``; the rest of the model is untouched.
  * ``'head'``: run the remaining layers *and the decode head* on the reduced tokens and restore the head's output
    (class logits), as the Expediting reference does for Segmenter. The segmentor must route the head output
    through the backbone's restore: ``TokenReductionEncoderDecoder`` or :func:`insert_token_reduction` do that.
Outputs taken inside the reduced span (``out_indices``) are restored copies (or, with ``restore_site='head'``,
reduced grids the head consumes).

The reduction modules hold no parameters or buffers: the state dict is that of the upstream backbone.
"""
from typing import Optional, Sequence, Union

import torch
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from ..phases import BACKBONE_REDUCED, phase
from ..reducers import build_reducer
from .registry import Host, ReductionPlan, packed_qv_slot, register_host, set_plan, upstream_defaults
from .span import ReductionStack, check_capabilities, check_restore_site, check_sites, span_phase

HOST_NAME = 'mmseg VisionTransformer (Segmenter, DPT)'


def plan_vit(depth: int, with_cls_token: bool, reducer, reduce_after_layer: Union[int, Sequence[int], None] = None,
             restore_after_layer: Optional[int] = None, restore_site: str = 'backbone',
             host: str = HOST_NAME) -> ReductionPlan:
    """The placement on a ``depth``-layer ViT (the one validator: configs, ``insert_token_reduction``, the hook and
    the tools' early checks; reused by other plain-ViT hosts, ``host`` naming them). Raises ValueError /
    TypeError / KeyError naming the parameter."""
    settings = dict(reducer=reducer, reduce_after_layer=reduce_after_layer, restore_after_layer=restore_after_layer,
                    restore_site=restore_site)
    reducer = build_reducer(reducer)
    check_restore_site(restore_site)
    if reducer is None:
        return ReductionPlan(host, depth, restore_site=restore_site, settings=settings)
    sites = check_sites(reduce_after_layer, depth - 1, f'{depth}-layer backbone', '-1: before the first layer')
    if restore_after_layer is None:
        restore_after_layer = depth - 1
    if not isinstance(restore_after_layer, int) or not 0 <= restore_after_layer < depth:
        raise ValueError(f'restore_after_layer must be an integer in [0, {depth - 1}] for this {depth}-layer '
                         f'backbone, got {restore_after_layer!r}')
    check_capabilities(reducer, 'this ViT', provides_importance=with_cls_token,
                       why_no_importance=' (with_cls_token=False)')
    name, in_layer = type(reducer).__name__, reducer.needs_importance   # in_layer: between attention and MLP
    if reducer.per_sub_block and len(sites) > 1:
        raise ValueError(f'{name} in sub-block mode takes one reduce_after_layer (the span start), got '
                         f'{reduce_after_layer!r}')
    if restore_site == 'head':
        if restore_after_layer != depth - 1:
            raise ValueError("restore_after_layer must be the last layer (or None) with restore_site='head', "
                             f'got {restore_after_layer}')
        if reducer.per_sub_block:
            raise ValueError(f"{name} in sub-block mode restores inside every layer: use restore_site='backbone'")
    elif restore_after_layer <= sites[-1] and not (in_layer and restore_after_layer == sites[-1]):
        raise ValueError(f'restore_after_layer ({restore_after_layer}) must come after reduce_after_layer '
                         f'({reduce_after_layer}): the reduced span would be empty')
    if in_layer and sites[0] == -1:
        raise ValueError(f'{name} ranks tokens by the attention of the layer it runs in: reduce_after_layer=-1 '
                         '(before the first layer) has none')
    return ReductionPlan(host, depth, (reducer,), tuple(sites), (restore_after_layer,), restore_site,
                         settings=settings)


def _plan_cfg(cfg: dict, **settings) -> ReductionPlan:
    default = upstream_defaults(VisionTransformer, 'num_layers', 'with_cls_token')
    return plan_vit(cfg.get('num_layers', default['num_layers']),
                    cfg.get('with_cls_token', default['with_cls_token']), **settings)


def _plan_module(backbone, **settings) -> ReductionPlan:
    return plan_vit(len(backbone.layers), backbone.with_cls_token, **settings)


def attention_with_weights(attn, x):
    """mmcv ``MultiheadAttention`` on x: (B, N, C) without its residual, and the attention weights averaged over
    heads, (B, N, N). Same computation as ``attn(x, identity=0)``."""
    q = x.transpose(0, 1) if attn.batch_first else x
    out, weights = attn.attn(q, q, q, need_weights=True, average_attn_weights=True)
    if attn.batch_first:
        out = out.transpose(0, 1)
    return attn.dropout_layer(attn.proj_drop(out)), weights


@MODELS.register_module()
class ReducedVisionTransformer(VisionTransformer):
    """mmseg ``VisionTransformer`` with a token reducer inside. All upstream arguments are accepted unchanged.

    Args:
        reducer: reducer config, e.g. ``dict(type='TokenAdapter', r_h=0.3, r_w=0.3)``; None = upstream model.
        reduce_after_layer: 0-based index of the last full-resolution layer (or a list of them).
        restore_after_layer: 0-based index of the last reduced layer (default: the last layer).
        restore_site: 'backbone' or 'head' (see the module docstring).
    """

    def __init__(self, *args, reducer=None, reduce_after_layer: Union[int, Sequence[int], None] = None,
                 restore_after_layer: Optional[int] = None, restore_site: str = 'backbone', **kwargs):
        super().__init__(*args, **kwargs)
        set_plan(self, _plan_module(self, reducer=reducer, reduce_after_layer=reduce_after_layer,
                                    restore_after_layer=restore_after_layer, restore_site=restore_site))

    @property
    def token_reducer(self):
        return self.token_reduction.plan.reducer

    @property
    def reduction_active(self) -> bool:
        return self.token_reduction.plan.active

    def _sub_block_layer(self, layer, x, n_extra, grid):
        """One encoder layer with the reducer applied around its attention and / or its MLP (the reducer's declared
        ``sub_blocks``: the papers' ToMe baseline reduces both, ToCom's dense variant the MLP only): the LayerNorm'd
        input of the sub-block is reduced, the sub-block runs on it, its output (no residual) is restored and
        added. Extra tokens are never reduced."""
        zero = x.new_zeros(())
        for name, norm, block in (('attention', layer.norm1, layer.attn), ('mlp', layer.norm2, layer.ffn)):
            y = norm(x)
            if name not in self.token_reducer.sub_blocks:
                x = x + block(y, identity=zero)
                continue
            stack = ReductionStack(self.token_reducer, grid)
            reduced = stack.reduce(y[:, n_extra:])
            z = block(torch.cat([y[:, :n_extra], reduced], 1), identity=zero)
            x = x + torch.cat([z[:, :n_extra], stack.restore(z[:, n_extra:]).flatten(1, 2)], 1)
        return x

    def forward(self, inputs):
        state = self.token_reduction
        state.pending_restore = None
        plan = state.plan
        if not plan.active:
            return super().forward(inputs)
        # the upstream forward, retyped: the reduction sits between layers, inside a layer (importance-ranked
        # reducers) or around its sub-blocks, and the outputs inside the span are restored or reduced grids
        B = inputs.shape[0]
        x, hw_shape = self.patch_embed(inputs)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        n_extra = 1 if self.with_cls_token else 0
        sites, last_reduced, reducer = plan.sites, plan.restore_after_layer[0], plan.reducer
        stack = ReductionStack(reducer, hw_shape)

        def reduce(x, importance=None):
            return torch.cat([x[:, :n_extra], stack.reduce(x[:, n_extra:], importance)], 1)

        outs = []
        if self.out_origin:
            outs.append(self._output(x, n_extra, hw_shape, stack))
        if sites[0] == -1:  # reduce the patch embeddings: every layer runs on fewer tokens
            x = reduce(x)
        for i, layer in enumerate(self.layers):
            stage = span_phase(i, sites[0], last_reduced)
            if i in sites and reducer.needs_importance:
                # EViT-style: reduce between this layer's attention and its MLP, ranked by its cls attention
                with phase(stage):
                    z, attn = attention_with_weights(layer.attn, layer.norm1(x))
                    x = x + z
                x = reduce(x, attn[:, 0, n_extra:])
                with phase(BACKBONE_REDUCED):
                    x = layer.ffn(layer.norm2(x), identity=x)
            else:
                with phase(stage):
                    if reducer.per_sub_block and sites[0] < i <= last_reduced:
                        x = self._sub_block_layer(layer, x, n_extra, hw_shape)
                    else:
                        x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                with phase(stage):
                    x = self.norm1(x)
            if i in sites and not reducer.per_sub_block and not reducer.needs_importance:
                x = reduce(x)
            if stack and i == last_reduced and plan.restore_site == 'backbone':
                x = torch.cat([x[:, :n_extra], stack.restore(x[:, n_extra:]).flatten(1, 2)], 1)
                stack = ReductionStack(reducer, hw_shape)
            if i in self.out_indices:
                outs.append(self._output(x, n_extra, hw_shape, stack))
        if stack:   # restore_site == 'head': the segmentor restores the head's output
            if not state.head_restores:
                raise RuntimeError("restore_site='head' needs a segmentor that restores the head output: use "
                                   "type='TokenReductionEncoderDecoder' or mmtokred.insert_token_reduction")
            state.pending_restore = stack.pending_restore()
        return tuple(outs)

    def _output(self, x, n_extra, hw_shape, stack):
        """Patch tokens of x as a (B, C, h, w) map: restored copy inside a backbone-restored span, reduced grid
        (or (B, C, 1, N_r) for a token set) when the head restores."""
        tokens = x[:, n_extra:]
        B, N, C = tokens.shape
        if not stack:
            grid = tokens.reshape(B, hw_shape[0], hw_shape[1], C)
        elif self.token_reduction.plan.restore_site == 'backbone':
            grid = stack.restore(tokens)
        else:
            grid = tokens.reshape(B, *stack.grid(N), C)
        out = grid.permute(0, 3, 1, 2).contiguous()
        if self.output_cls_token:
            out = [out, x[:, 0]]
        return out


def _qv_slots(model):
    return [packed_qv_slot(layer.attn.attn, 'in_proj_weight', layer.attn.embed_dims, f'layers[{i}].attn.attn')
            for i, layer in enumerate(getattr(model, 'backbone', model).layers)]


def _distill_output(model, x):
    if hasattr(model, 'decode_head'):
        return model(x, mode='tensor'), 'logits'
    return getattr(model, 'backbone', model)(x)[-1], 'features'


register_host(Host(HOST_NAME, (VisionTransformer,), ('ReducedVisionTransformer',), _plan_cfg, _plan_module,
                   reduced_class=ReducedVisionTransformer, qv_slots=_qv_slots, distill_output=_distill_output,
                   family='mmseg.VisionTransformer'))
