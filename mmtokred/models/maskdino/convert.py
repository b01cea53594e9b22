"""Official MaskDINO (detectron2) checkpoint -> mmdet state dict of :class:`MaskDINO` (this package).

Key mapping (official -> mmdet), see ``../shared/research/maskdino-port.md`` for the official layout
(``PD`` = ``sem_seg_head.pixel_decoder.``, ``PR`` = ``sem_seg_head.predictor.``, ``H`` = ``panoptic_head.``):

* ``backbone.*`` -> ``backbone.*`` through mmdet's Swin rules (``swin_converter``: stages, w_msa, ffn, unfold order
  of the patch-merging reduction / norm);
* ``PD input_proj.l.{0,1}`` -> ``H pixel_decoder.input_convs.l.{conv,gn}``;
  ``PD transformer.level_embed`` -> ``H pixel_decoder.level_encoding.weight``;
* ``PD transformer.encoder.layers.n.{self_attn.*,linear1,linear2,norm1,norm2}`` ->
  ``H pixel_decoder.encoder.layers.n.{self_attn.*,ffn.layers.0.0,ffn.layers.1,norms.0,norms.1}``;
* ``PD adapter_i / layer_i`` (conv, ``.norm``) -> ``H pixel_decoder.lateral_convs.i-1 / output_convs.i-1.{conv,gn}``;
  ``PD mask_features`` -> ``H pixel_decoder.mask_feature``;
* ``PR enc_output / enc_output_norm`` -> ``H memory_trans_fc / memory_trans_norm`` (mmdet's DINO names);
  ``PR class_embed / mask_embed`` -> ``H class_embed / mask_embed``;
* ``PR decoder.layers.n.self_attn.{in_proj_*,out_proj}`` -> ``H decoder.layers.n.self_attn.attn.*``;
  ``PR decoder.layers.n.{norm2,norm1,norm3}`` -> ``H decoder.layers.n.norms.{0,1,2}`` (execution order);
  ``PR decoder.layers.n.{cross_attn,linear1,linear2}`` -> ``H decoder.layers.n.{cross_attn,ffn.layers.0.0,
  ffn.layers.1}``; ``PR decoder.ref_point_head`` -> ``H decoder.ref_point_head``;
* one tensor under several names: ``PR decoder_norm`` = ``PR decoder.norm`` -> ``H decoder.norm``;
  ``PR _bbox_embed`` = ``PR bbox_embed.i`` = ``PR decoder.bbox_embed.i`` -> ``H bbox_embed`` (the box MLP is shared
  by the encoder head and every decoder layer);
* dropped: ``PR label_enc`` (denoising), ``criterion.*`` (loss), ``pixel_mean`` / ``pixel_std`` (in the data
  preprocessor).

A tensor stored under several names must hold the same values under each name; a checkpoint of another layout (a
Mask2Former checkpoint, a truncated file without a head) is refused with the missing and unexpected keys named.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

PD = 'sem_seg_head.pixel_decoder.'
PR = 'sem_seg_head.predictor.'
OUT_PD = 'panoptic_head.pixel_decoder.'
OUT_HEAD = 'panoptic_head.'

# Keys every MaskDINO checkpoint of the supported layout has (two-stage, no learnt queries, identity decoder
# input projection): the converter names those absent.
REQUIRED = [
    'backbone.patch_embed.proj.weight', 'backbone.norm0.weight',
    PD + 'input_proj.0.0.weight', PD + 'transformer.level_embed', PD + 'transformer.encoder.layers.0.linear1.weight',
    PD + 'mask_features.weight', PD + 'adapter_1.weight', PD + 'layer_1.weight',
    PR + 'enc_output.weight', PR + 'enc_output_norm.weight', PR + 'class_embed.weight',
    PR + 'mask_embed.layers.0.weight', PR + 'decoder_norm.weight', PR + 'decoder.layers.0.cross_attn.value_proj.weight',
    PR + 'decoder.ref_point_head.layers.0.weight', PR + '_bbox_embed.layers.0.weight',
]

# (official regex, mmdet replacement); first match wins.
RULES: List[Tuple[str, str]] = [
    (PD + r'input_proj\.(\d+)\.0\.(weight|bias)$', OUT_PD + r'input_convs.\1.conv.\2'),
    (PD + r'input_proj\.(\d+)\.1\.(weight|bias)$', OUT_PD + r'input_convs.\1.gn.\2'),
    (PD + r'transformer\.level_embed$', OUT_PD + 'level_encoding.weight'),
    (PD + r'transformer\.encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(weight|bias)$',
     OUT_PD + r'encoder.layers.\1.self_attn.\2.\3'),
    (PD + r'transformer\.encoder\.layers\.(\d+)\.linear1\.(weight|bias)$',
     OUT_PD + r'encoder.layers.\1.ffn.layers.0.0.\2'),
    (PD + r'transformer\.encoder\.layers\.(\d+)\.linear2\.(weight|bias)$',
     OUT_PD + r'encoder.layers.\1.ffn.layers.1.\2'),
    (PD + r'transformer\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)$', OUT_PD + r'encoder.layers.\1.norms.0.\2'),
    (PD + r'transformer\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)$', OUT_PD + r'encoder.layers.\1.norms.1.\2'),
    (PD + r'mask_features\.(weight|bias)$', OUT_PD + r'mask_feature.\1'),
    (PR + r'enc_output\.(weight|bias)$', OUT_HEAD + r'memory_trans_fc.\1'),
    (PR + r'enc_output_norm\.(weight|bias)$', OUT_HEAD + r'memory_trans_norm.\1'),
    (PR + r'class_embed\.(weight|bias)$', OUT_HEAD + r'class_embed.\1'),
    (PR + r'mask_embed\.layers\.(\d+)\.(weight|bias)$', OUT_HEAD + r'mask_embed.layers.\1.\2'),
    (PR + r'decoder\.layers\.(\d+)\.cross_attn\.(\w+)\.(weight|bias)$',
     OUT_HEAD + r'decoder.layers.\1.cross_attn.\2.\3'),
    (PR + r'decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$',
     OUT_HEAD + r'decoder.layers.\1.self_attn.attn.in_proj_\2'),
    (PR + r'decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)$',
     OUT_HEAD + r'decoder.layers.\1.self_attn.attn.out_proj.\2'),
    # official execution order inside a decoder layer: self-attn -> norm2, cross-attn -> norm1, ffn -> norm3
    (PR + r'decoder\.layers\.(\d+)\.norm2\.(weight|bias)$', OUT_HEAD + r'decoder.layers.\1.norms.0.\2'),
    (PR + r'decoder\.layers\.(\d+)\.norm1\.(weight|bias)$', OUT_HEAD + r'decoder.layers.\1.norms.1.\2'),
    (PR + r'decoder\.layers\.(\d+)\.norm3\.(weight|bias)$', OUT_HEAD + r'decoder.layers.\1.norms.2.\2'),
    (PR + r'decoder\.layers\.(\d+)\.linear1\.(weight|bias)$', OUT_HEAD + r'decoder.layers.\1.ffn.layers.0.0.\2'),
    (PR + r'decoder\.layers\.(\d+)\.linear2\.(weight|bias)$', OUT_HEAD + r'decoder.layers.\1.ffn.layers.1.\2'),
    (PR + r'decoder\.ref_point_head\.layers\.(\d+)\.(weight|bias)$',
     OUT_HEAD + r'decoder.ref_point_head.layers.\1.\2'),
    # tensors stored under several names: all collapse onto one mmdet key (values checked equal)
    (PR + r'(?:decoder_norm|decoder\.norm)\.(weight|bias)$', OUT_HEAD + r'decoder.norm.\1'),
    (PR + r'(?:_bbox_embed|bbox_embed\.\d+|decoder\.bbox_embed\.\d+)\.layers\.(\d+)\.(weight|bias)$',
     OUT_HEAD + r'bbox_embed.layers.\1.\2'),
]
# Lateral / output convs of the FPN level(s): adapter_i, layer_i (1-based) -> lateral_convs.i-1, output_convs.i-1.
FPN_RULE = re.compile(PD + r'(adapter|layer)_(\d+)\.(?:(norm)\.)?(weight|bias)$')
DROPPED = re.compile(r'^(criterion\.|pixel_mean$|pixel_std$|' + re.escape(PR) + r'label_enc\.)')


def _fpn_key(match: re.Match) -> str:
    kind, index, is_norm, param = match.groups()
    name = 'lateral_convs' if kind == 'adapter' else 'output_convs'
    return f'{OUT_PD}{name}.{int(index) - 1}.{"gn" if is_norm else "conv"}.{param}'


def _unwrap(checkpoint: Dict) -> Dict[str, torch.Tensor]:
    for wrapper in ('model', 'state_dict'):
        if isinstance(checkpoint.get(wrapper), dict):
            return checkpoint[wrapper]
    return checkpoint


def _describe(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(sorted(keys)[:limit])
    return f'{len(keys)} key(s): {shown}' + (', ...' if len(keys) > limit else '')


def convert_maskdino(checkpoint: Dict) -> 'OrderedDict[str, torch.Tensor]':
    """Official MaskDINO checkpoint -> state dict of mmtokred's mmdet ``MaskDINO`` detector.

    Args:
        checkpoint: ``{'model': state_dict}`` as released (detectron2 ``DetectionCheckpointer``), a
            ``{'state_dict': ...}`` wrapper, or the bare official state dict.

    Returns:
        The mmdet state dict (tensors keep their dtype; the model casts on load).

    Raises:
        ValueError: the checkpoint is not an official MaskDINO checkpoint of the supported layout (keys missing,
            keys without a mapping, e.g. a Mask2Former checkpoint), or a tensor shared under several official
            names differs between them.
    """
    from mmdet.models.backbones.swin import swin_converter  # mmdet's original-Swin -> mmdet rules

    state = _unwrap(checkpoint)
    missing = [k for k in REQUIRED if k not in state]
    backbone = OrderedDict((k[len('backbone.'):], v) for k, v in state.items() if k.startswith('backbone.'))
    out: 'OrderedDict[str, torch.Tensor]' = swin_converter(backbone)  # adds the 'backbone.' prefix back
    sources: Dict[str, str] = {}
    unexpected, differing = [], []
    for key, value in state.items():
        if key.startswith('backbone.') or DROPPED.match(key):
            continue
        new_key = None
        fpn = FPN_RULE.match(key)
        if fpn:
            new_key = _fpn_key(fpn)
        else:
            for pattern, replacement in RULES:
                if re.match(pattern, key):
                    new_key = re.sub(pattern, replacement, key)
                    break
        if new_key is None:
            unexpected.append(key)
        elif new_key in out:
            if out[new_key] is not value and not torch.equal(out[new_key].float(), value.float()):
                differing.append(f'{sources[new_key]} != {key}')
        else:
            out[new_key] = value
            sources[new_key] = key
    problems = []
    if missing:
        problems.append('missing ' + _describe(missing))
    if unexpected:
        problems.append('unexpected (no MaskDINO mapping) ' + _describe(unexpected))
    if problems:
        raise ValueError('not an official MaskDINO checkpoint of the supported layout (two-stage, Swin backbone, '
                         'MaskDINOEncoder pixel decoder, MaskDINODecoder): ' + '; '.join(problems))
    if differing:
        raise ValueError('tensors that MaskDINO shares between several names differ in this checkpoint: '
                         + '; '.join(differing[:8]))
    return out
