"""Host for mmseg's plain ``VisionTransformer`` (Segmenter, DPT, ...); placement: :func:`.placement.plan_vit`.

The embedding and every layer module are upstream's; the encoder loop is the shared span driver
(:func:`.span.run_span`) plus what only a ViT layer does: importance-ranked reducers (EViT, MSTM, Token Adapter
``importance='attention'``) run between the listed layer's attention and MLP, ranked by the cls token's attention
(mean over heads), as EViT does; ``per_sub_block`` reducers (ToMe ``'sub_block'``, ``'mlp'``) run around the
declared sub-blocks of every layer of the span. With ``restore_site='head'`` the segmentor restores the head's
output (the pending restore in the state holder). Outputs inside the span are restored copies (or reduced grids).
"""
from typing import Optional, Sequence, Union

import torch
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from ..phases import phase
from .mmcv_layer import reduce_around_sub_blocks, reduce_inside_layer
from .placement import VIT_HOST, plan_vit
from .registry import Host, packed_qv_slot, register_host, set_plan, upstream_defaults
from .span import run_span


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
        set_plan(self, plan_vit(len(self.layers), self.with_cls_token, reducer, reduce_after_layer,
                                restore_after_layer, restore_site))

    @property
    def reduction_active(self) -> bool:
        return self.token_reduction.plan.active

    def forward(self, inputs):
        state = self.token_reduction
        state.pending_restore, plan = None, state.plan
        if not plan.active:
            return super().forward(inputs)
        x, hw_shape = self.patch_embed(inputs)      # upstream's embedding, verbatim
        x = torch.cat((self.cls_token.expand(inputs.shape[0], -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        n_extra, outs = int(self.with_cls_token), []

        def run_layer(i, layer, x, stage, reduce):
            if i in plan.sites and plan.reducer.needs_importance:     # EViT-style, ranked by the cls attention
                return reduce_inside_layer(layer, x, stage, lambda x, attn: reduce(x, attn[:, 0, n_extra:]))
            with phase(stage):
                if plan.reducer.per_sub_block and plan.sites[0] < i <= plan.restore_after_layer[0]:
                    return reduce_around_sub_blocks(layer, x, plan.reducer, n_extra, hw_shape)
                return layer(x)

        def final_norm(i, x, stage):
            if i == len(self.layers) - 1 and self.final_norm:
                with phase(stage):
                    return self.norm1(x)
            return x

        def output(i, x, stack):
            if (i == -1 and self.out_origin) or i in self.out_indices:
                outs.append(self._output(x, n_extra, hw_shape, stack))

        x, stack = run_span(self.layers, x, plan, n_extra, hw_shape, run_layer, final_norm, output)
        if stack:   # restore_site == 'head': the segmentor restores the head's output
            if not state.head_restores:
                raise RuntimeError("restore_site='head' needs a segmentor that restores the head output: use "
                                   "type='TokenReductionEncoderDecoder' or mmtokred.insert_token_reduction")
            state.pending_restore = stack.pending_restore()
        return tuple(outs)

    def _output(self, x, n_extra, hw_shape, stack):
        """Patch tokens of x as (B, C, h, w): restored inside a backbone-restored span, else the reduced grid."""
        tokens = x[:, n_extra:]
        if stack and self.token_reduction.plan.restore_site == 'backbone':
            grid = stack.restore(tokens)
        else:
            grid = tokens.reshape(tokens.shape[0], *(stack.grid(tokens.shape[1]) if stack else hw_shape), -1)
        out = grid.permute(0, 3, 1, 2).contiguous()
        return [out, x[:, 0]] if self.output_cls_token else out


def _plan_cfg(cfg: dict, **settings):
    default = upstream_defaults(VisionTransformer, 'num_layers', 'with_cls_token')
    return plan_vit(cfg.get('num_layers', default['num_layers']), cfg.get('with_cls_token', default['with_cls_token']),
                    **settings)


def _qv_slots(model):
    return [packed_qv_slot(layer.attn.attn, 'in_proj_weight', layer.attn.embed_dims, f'layers[{i}].attn.attn')
            for i, layer in enumerate(getattr(model, 'backbone', model).layers)]


def _distill_output(model, x):
    if hasattr(model, 'decode_head'):
        return model(x, mode='tensor'), 'logits'
    return getattr(model, 'backbone', model)(x)[-1], 'features'


register_host(Host(VIT_HOST, (VisionTransformer,), ('ReducedVisionTransformer',), _plan_cfg,
                   lambda backbone, **settings: plan_vit(len(backbone.layers), backbone.with_cls_token, **settings),
                   reduced_class=ReducedVisionTransformer, qv_slots=_qv_slots, distill_output=_distill_output,
                   family='mmseg.VisionTransformer'))
