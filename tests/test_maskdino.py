"""MaskDINO port (mmtokred/models/maskdino) against the official implementation's reference outputs.

Fixtures: ../shared/fixtures/maskdino (tiny random models with the Swin-L MaskDINO architecture, official layout;
see its README). Tolerances (observed errors on the generating set-up in brackets): backbone / pixel-decoder features
are stored as fp16 copies of the fp32 values, so they are compared with rtol 1e-3 (fp16 rounding: <= 4.9e-4
relative) and atol 1e-4 x the tensor's max magnitude [<= 5.3e-4 relative]; fp32 decoder logits / masks / boxes with
rtol 1e-5, atol 2e-5 [<= 4.1e-6 abs]; semantic scores atol 5e-6 [9.5e-7]; instance scores atol
:data:`INSTANCE_SCORE_ATOL` = atol / 2 = 1e-5, what the decoder's float32 tolerance allows [2.7e-7 here, up to 4e-6
on a wider set of official outputs] and boxes (output pixels) atol 2e-4 [6.1e-5]; discrete results exactly
(segments, classes, top-k indices, instance masks [0 px differ]; instances aligned by their flat top-k index), with
the README's allowance for semantic argmax ties [0 px differ] and the same allowance for panoptic ids: a pixel may
get another segment only where its two best queries are tied within what the decoder's tolerance allows
(:data:`PANOPTIC_TIE_ATOL`) [0 px differ]; the result then does not depend on the thread count (summation order).
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURES = osp.join(ROOT, '..', 'shared', 'fixtures', 'maskdino')
needs_fixtures = pytest.mark.skipif(not osp.isdir(FIXTURES), reason='../shared/fixtures/maskdino absent')
TINY_CONFIGS = {'panoptic': 'configs/tiny/maskdino_tiny_coco-panoptic.py',
                'instance': 'configs/tiny/maskdino_tiny_coco-instance.py'}
FULL_CONFIGS = {'panoptic': 'configs/maskdino_swinl_coco-panoptic.py',
                'instance': 'configs/maskdino_swinl_coco-instance.py'}
FP32_TOL = dict(rtol=1e-5, atol=2e-5)
PANO_TEMPERATURE = 0.06     # the configs' test_cfg.pano_temp (the official default)
# Score tolerances derived from the decoder's: a logit off by atol moves sigmoid(logit) by <= atol / 4, so an
# instance score (class score x mean mask probability, both sigmoids) by <= atol / 2; a sharpened panoptic score
# (softmax over classes of sigmoid / T, whose Jacobian rows sum to <= 1/2 in absolute value) by <= atol / (8 T), a
# pixel's score x probability by <= atol / (8 T) + atol / 4, and the gap between two queries by twice that.
INSTANCE_SCORE_ATOL = FP32_TOL['atol'] / 2
PANOPTIC_TIE_ATOL = 2 * (FP32_TOL['atol'] / (8 * PANO_TEMPERATURE) + FP32_TOL['atol'] / 4)


def load_cfg(path):
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, path))


def build(cfg):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmtokred  # noqa: F401
    init_default_scope('mmdet')
    return MODELS.build(cfg.model).eval()


def build_on_meta(cfg):
    """Build without allocating (the Swin-L model has 223M parameters). mmdet's Swin reads its drop-path rates
    with ``.item()`` from a ``linspace``, which must therefore stay on the CPU."""
    from unittest import mock
    linspace = torch.linspace
    with torch.device('meta'), mock.patch.object(torch, 'linspace',
                                                 lambda *a, **k: linspace(*a, **{**k, 'device': 'cpu'})):
        return build(cfg)


def fixture_path(name):
    return osp.join(FIXTURES, name)


# ---------------------------------------------------------------- official layout, independent of the converter
def official_maskdino_shapes(swin_dim, depths, heads, window, hidden, enc_ffn, dec_ffn, enc_layers, dec_layers,
                             num_classes, extra_levels=1, attn_heads=8, points=4):
    """Key -> shape of an official MaskDINO Swin checkpoint, written from the official module definitions
    (D2SwinTransformer, MaskDINOEncoder, MaskDINODecoder). Checked against the fixture checkpoint below."""
    shapes = {'backbone.patch_embed.proj.weight': (swin_dim, 3, 4, 4)}
    for n in ('patch_embed.proj.bias', 'patch_embed.norm.weight', 'patch_embed.norm.bias'):
        shapes['backbone.' + n] = (swin_dim, )
    dims = [swin_dim * 2**i for i in range(len(depths))]
    for i, (c, depth, h) in enumerate(zip(dims, depths, heads)):
        for j in range(depth):
            b = f'backbone.layers.{i}.blocks.{j}.'
            shapes.update({b + 'attn.relative_position_bias_table': ((2 * window - 1)**2, h),
                           b + 'attn.relative_position_index': (window**2, window**2),
                           b + 'attn.qkv.weight': (3 * c, c), b + 'attn.qkv.bias': (3 * c, ),
                           b + 'attn.proj.weight': (c, c), b + 'mlp.fc1.weight': (4 * c, c),
                           b + 'mlp.fc1.bias': (4 * c, ), b + 'mlp.fc2.weight': (c, 4 * c)})
            for n in ('norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias', 'attn.proj.bias', 'mlp.fc2.bias'):
                shapes[b + n] = (c, )
        if i < len(depths) - 1:
            d = f'backbone.layers.{i}.downsample.'
            shapes.update({d + 'reduction.weight': (2 * c, 4 * c), d + 'norm.weight': (4 * c, ),
                           d + 'norm.bias': (4 * c, )})
        shapes.update({f'backbone.norm{i}.weight': (c, ), f'backbone.norm{i}.bias': (c, )})
    levels = len(depths) + extra_levels

    def msda(prefix):
        return {prefix + 'sampling_offsets.weight': (attn_heads * levels * points * 2, hidden),
                prefix + 'sampling_offsets.bias': (attn_heads * levels * points * 2, ),
                prefix + 'attention_weights.weight': (attn_heads * levels * points, hidden),
                prefix + 'attention_weights.bias': (attn_heads * levels * points, ),
                prefix + 'value_proj.weight': (hidden, hidden), prefix + 'value_proj.bias': (hidden, ),
                prefix + 'output_proj.weight': (hidden, hidden), prefix + 'output_proj.bias': (hidden, )}

    def linear(prefix, n_out, n_in):
        return {prefix + '.weight': (n_out, n_in), prefix + '.bias': (n_out, )}

    def norm(prefix):
        return {prefix + '.weight': (hidden, ), prefix + '.bias': (hidden, )}

    pd = 'sem_seg_head.pixel_decoder.'
    for level in range(levels):
        c_in, k = (dims[level], 1) if level < len(depths) else (dims[-1] if level == len(depths) else hidden, 3)
        shapes.update({f'{pd}input_proj.{level}.0.weight': (hidden, c_in, k, k),
                       f'{pd}input_proj.{level}.0.bias': (hidden, )} | norm(f'{pd}input_proj.{level}.1'))
    shapes[pd + 'transformer.level_embed'] = (levels, hidden)
    for n in range(enc_layers):
        e = f'{pd}transformer.encoder.layers.{n}.'
        shapes.update(msda(e + 'self_attn.') | linear(e + 'linear1', enc_ffn, hidden)
                      | linear(e + 'linear2', hidden, enc_ffn) | norm(e + 'norm1') | norm(e + 'norm2'))
    shapes.update({pd + 'mask_features.weight': (hidden, hidden, 1, 1), pd + 'mask_features.bias': (hidden, ),
                   pd + 'adapter_1.weight': (hidden, dims[0], 1, 1), pd + 'layer_1.weight': (hidden, hidden, 3, 3)}
                  | norm(pd + 'adapter_1.norm') | norm(pd + 'layer_1.norm'))
    pr = 'sem_seg_head.predictor.'
    shapes.update(linear(pr + 'enc_output', hidden, hidden) | norm(pr + 'enc_output_norm')
                  | linear(pr + 'class_embed', num_classes, hidden) | {pr + 'label_enc.weight': (num_classes, hidden)}
                  | norm(pr + 'decoder_norm') | norm(pr + 'decoder.norm')
                  | linear(pr + 'decoder.ref_point_head.layers.0', hidden, 2 * hidden)
                  | linear(pr + 'decoder.ref_point_head.layers.1', hidden, hidden))
    for m in range(3):
        shapes.update(linear(f'{pr}mask_embed.layers.{m}', hidden, hidden))
    for n in range(dec_layers):
        d = f'{pr}decoder.layers.{n}.'
        shapes.update(msda(d + 'cross_attn.') | norm(d + 'norm1') | norm(d + 'norm2') | norm(d + 'norm3')
                      | {d + 'self_attn.in_proj_weight': (3 * hidden, hidden),
                         d + 'self_attn.in_proj_bias': (3 * hidden, )}
                      | linear(d + 'self_attn.out_proj', hidden, hidden) | linear(d + 'linear1', dec_ffn, hidden)
                      | linear(d + 'linear2', hidden, dec_ffn))
    for box in ['_bbox_embed'] + [f'bbox_embed.{n}' for n in range(dec_layers)] + [
            f'decoder.bbox_embed.{n}' for n in range(dec_layers)]:
        for m, n_out in enumerate((hidden, hidden, 4)):
            shapes.update(linear(f'{pr}{box}.layers.{m}', n_out, hidden))
    shapes['criterion.empty_weight'] = (num_classes + 1, )
    return shapes


def synthetic_official_checkpoint(shapes, device='meta'):
    """Official-layout state dict with the given shapes; tensors MaskDINO shares are one object under every name."""
    state, shared = {}, {}
    for key, shape in shapes.items():
        alias = key
        for pattern in ('decoder.bbox_embed.', 'bbox_embed.'):
            if f'predictor.{pattern}' in key:
                alias = 'sem_seg_head.predictor._bbox_embed.' + key.split(pattern, 1)[1].split('.', 1)[1]
        alias = alias.replace('predictor.decoder.norm.', 'predictor.decoder_norm.')
        if alias not in shared:
            dtype = torch.long if key.endswith('relative_position_index') else torch.float32
            shared[alias] = torch.empty(shape, dtype=dtype, device=device)
        state[key] = shared[alias]
    return {'model': state}


TINY = dict(swin_dim=16, depths=[2, 2, 2, 2], heads=[1, 2, 4, 8], window=12, hidden=64, enc_ffn=128, dec_ffn=128,
            enc_layers=2, dec_layers=3)
SWINL = dict(swin_dim=192, depths=[2, 2, 18, 2], heads=[6, 12, 24, 48], window=12, hidden=256, enc_ffn=2048,
             dec_ffn=2048, enc_layers=6, dec_layers=9)


@needs_fixtures
def test_official_layout_generator_matches_fixture_checkpoint():
    state = torch.load(fixture_path('maskdino_tiny_panoptic.pth'), weights_only=True)['model']
    assert {k: tuple(v.shape) for k, v in state.items()} == official_maskdino_shapes(**TINY, num_classes=133)


# ---------------------------------------------------------------- converter
@pytest.mark.parametrize('variant', ['panoptic', 'instance'])
def test_full_size_config_loads_converted_synthetic_checkpoint_strictly(variant):
    from mmtokred.models.maskdino import convert_maskdino
    cfg = load_cfg(FULL_CONFIGS[variant])
    model = build_on_meta(cfg)
    num_classes = cfg.model.panoptic_head.num_classes
    converted = convert_maskdino(synthetic_official_checkpoint(official_maskdino_shapes(**SWINL,
                                                                                        num_classes=num_classes)))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_converter_refuses_other_layouts():
    from mmtokred.models.maskdino import convert_maskdino
    official = synthetic_official_checkpoint(official_maskdino_shapes(**TINY, num_classes=133))['model']
    headless = {k: v for k, v in official.items() if not k.startswith('sem_seg_head.predictor.')}
    with pytest.raises(ValueError, match=r'missing .*sem_seg_head\.predictor\.class_embed\.weight'):
        convert_maskdino(headless)
    # a Mask2Former checkpoint: same backbone / pixel-decoder stem, its own transformer decoder keys
    mask2former = {k: v for k, v in headless.items() if 'adapter_1' not in k and 'layer_1' not in k}
    for key in ('query_feat.weight', 'query_embed.weight', 'level_embed.weight', 'class_embed.weight',
                'transformer_self_attention_layers.0.self_attn.in_proj_weight', 'decoder_norm.weight'):
        mask2former['sem_seg_head.predictor.' + key] = torch.empty(2, device='meta')
    with pytest.raises(ValueError, match=r'unexpected .*transformer_self_attention_layers'):
        convert_maskdino(mask2former)
    with pytest.raises(ValueError, match=r'missing .*enc_output\.weight'):
        convert_maskdino(mask2former)
    different = dict(official)
    different['sem_seg_head.predictor.decoder.norm.weight'] = torch.ones(64)
    different['sem_seg_head.predictor.decoder_norm.weight'] = torch.zeros(64)
    with pytest.raises(ValueError, match='differ'):
        convert_maskdino(different)


# ---------------------------------------------------------------- fixture reproduction
@pytest.fixture(scope='module', params=['panoptic', 'instance'])
def tiny(request):
    """(variant, model with the converted fixture weights, reference outputs, our outputs per image)."""
    from mmdet.structures import DetDataSample

    from mmtokred.models.maskdino import convert_maskdino
    if not osp.isdir(FIXTURES):
        pytest.skip('../shared/fixtures/maskdino absent')
    variant = request.param
    model = build(load_cfg(TINY_CONFIGS[variant]))
    converted = convert_maskdino(torch.load(fixture_path(f'maskdino_tiny_{variant}.pth'), weights_only=True))
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ref = torch.load(fixture_path(f'maskdino_tiny_{variant}_outputs.pt'), weights_only=True)
    ours = []
    captured = {}
    hooks = [model.backbone.register_forward_hook(lambda m, a, o: captured.update(backbone=o)),
             model.panoptic_head.register_forward_hook(lambda m, a, o: captured.update(head=o))]
    with torch.no_grad():
        for inp, out in zip(ref['inputs'], ref['outputs']):
            sample = DetDataSample(metainfo=dict(img_shape=tuple(out['image_size']),
                                                 ori_shape=(inp['height'], inp['width'])))
            # LoadImageFromFile gives BGR; the data preprocessor converts to RGB, normalises and pads to 32
            data = model.data_preprocessor(dict(inputs=[inp['image'].flip(0)], data_samples=[sample]), False)
            assert list(data['inputs'].shape[-2:]) == out['padded_size']
            samples = model.predict(data['inputs'], data['data_samples'])  # one forward, hooks keep the outputs
            with CapturePanopticInputs() as panoptic:
                results = model.postprocess(captured['head'], [s.metainfo for s in samples],
                                            data['inputs'].shape[-2:])
            ours.append(dict(captured, results=results[0], samples=samples, pixel_gap=panoptic.gap()))
    for hook in hooks:
        hook.remove()
    return variant, model, ref, ours


def sub(x, stride):
    """The fixtures' grid: stride-4 maps [..., ::4, ::4], stride-8 [..., ::2, ::2], coarser complete."""
    step = {4: 4, 8: 2}.get(stride, 1)
    return x[..., ::step, ::step]


def assert_close_fp16_copy(ours, ref):
    ref = ref.float()
    torch.testing.assert_close(ours.float(), ref, rtol=1e-3, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize('option, message', [
    (dict(test_cfg=dict(object_mask_thr=1.5)), r'object_mask_thr must be in \[0, 1\]'),
    (dict(test_cfg=dict(pano_temp=0)), 'pano_temp must be > 0'),
    (dict(test_cfg=dict(max_per_image=0)), 'max_per_image must be an integer >= 1'),
    (dict(test_cfg=dict(topk=100)), 'unknown test_cfg key'),
    (dict(panoptic_head=dict(initialize_box_type='mask2box')), 'initialize_box_type must be one of'),
])
def test_bad_settings_are_refused(option, message):
    cfg = load_cfg(TINY_CONFIGS['panoptic'])
    cfg.merge_from_dict(dict(model=option))
    with pytest.raises(ValueError, match=message):
        build(cfg)


def test_tiny_config_matches_fixture_config(tiny):
    variant, model, _, _ = tiny
    official = json.load(open(fixture_path(f'maskdino_tiny_{variant}_config.json')))
    derived, head = official['derived'], model.panoptic_head
    assert head.num_classes == derived['num_classes'] and head.num_queries == derived['num_queries']
    assert head.initialize_box_type == derived['initialize_box_type']
    cfg = model.test_cfg
    for ours, theirs in [('semantic_on', 'semantic_on'), ('panoptic_on', 'panoptic_on'),
                         ('instance_on', 'instance_on'), ('object_mask_thr', 'object_mask_threshold'),
                         ('overlap_thr', 'overlap_threshold'), ('pano_temp', 'pano_temp'),
                         ('transform_eval', 'transform_eval'), ('max_per_image', 'test_topk_per_image')]:
        assert cfg[ours] == derived[theirs], ours
    assert list(model.data_preprocessor.mean.flatten().tolist()) == pytest.approx(official['pixel_mean'])
    assert list(model.data_preprocessor.std.flatten().tolist()) == pytest.approx(official['pixel_std'])
    assert model.data_preprocessor.pad_size_divisor == derived['size_divisibility']


def test_backbone_and_pixel_decoder_match(tiny):
    variant, _, ref, ours = tiny
    if variant != 'panoptic':
        pytest.skip('the fixtures store features once (panoptic file; identical weights in both variants)')
    for out, mine in zip(ref['outputs'], ours):
        for level, (name, stride) in enumerate(zip(('res2', 'res3', 'res4', 'res5'), (4, 8, 16, 32))):
            assert_close_fp16_copy(sub(mine['backbone'][level], stride), out['backbone'][name])
        pd = out['pixel_decoder']
        assert_close_fp16_copy(sub(mine['head']['mask_features'], 4), pd['mask_features'])
        assert pd['multi_scale_strides'] == [4, 8, 16, 32, 64]
        for level, stride in enumerate(pd['multi_scale_strides']):
            assert_close_fp16_copy(sub(mine['head']['multi_scale_features'][level], stride),
                                   pd['multi_scale_features'][level])


def test_decoder_outputs_match(tiny):
    _, _, ref, ours = tiny
    for out, mine in zip(ref['outputs'], ours):
        dec, head = out['decoder'], mine['head']
        assert torch.equal(head['topk_index'][0], dec['two_stage_topk_index'])
        assert sum(f.shape[-2] * f.shape[-1] for f in head['multi_scale_features']) == dec['two_stage_num_tokens']
        for name in ('pred_logits', 'pred_boxes', 'pred_masks', 'interm_pred_logits', 'interm_pred_boxes'):
            torch.testing.assert_close(head[name], dec[name], **FP32_TOL, msg=name)
        torch.testing.assert_close(head['interm_pred_masks'][..., ::4, ::4], dec['interm_pred_masks_sub4'],
                                   **FP32_TOL)
        for name in ('aux_pred_logits', 'aux_pred_boxes'):
            assert len(head[name]) == len(dec[name])
            for mine_l, ref_l in zip(head[name], dec[name]):
                torch.testing.assert_close(mine_l, ref_l, **FP32_TOL, msg=name)


def panoptic_pixel_gap(logits, masks, object_mask_thr=0.25, temperature=PANO_TEMPERATURE):
    """Per pixel, the gap between the two best kept queries' score x mask probability (the quantity whose argmax
    assigns the pixel in ``panoptic_inference``); inf where fewer than two queries are kept."""
    from mmtokred.models.maskdino.postprocess import sharpened_scores
    keep = logits.sigmoid().max(-1).values > object_mask_thr
    if int(keep.sum()) < 2:
        return torch.full(masks.shape[-2:], float('inf'))
    scores = sharpened_scores(logits, temperature).max(-1).values[keep]
    top2 = (scores.view(-1, 1, 1) * masks.sigmoid()[keep]).topk(2, dim=0).values
    return top2[0] - top2[1]


class CapturePanopticInputs:
    """Records the (logits, masks) that the detector's post-processing passes to ``panoptic_inference``."""

    def __enter__(self):
        from mmtokred.models.maskdino import detector
        self.module, self.original, self.calls = detector, detector.panoptic_inference, []

        def capture(logits, masks, *args, **kwargs):
            self.calls.append((logits, masks))
            return self.original(logits, masks, *args, **kwargs)

        detector.panoptic_inference = capture
        return self

    def __exit__(self, *exc):
        self.module.panoptic_inference = self.original

    def gap(self):
        return panoptic_pixel_gap(*self.calls[-1]) if self.calls else None


def assert_panoptic_ids_match(ids, ref_ids, gap):
    """Equal ids, except where the two best queries are tied within :data:`PANOPTIC_TIE_ATOL` (then the winner
    depends on the float summation order, e.g. the thread count)."""
    differs = ids.to(torch.uint8) != ref_ids
    if not differs.any():
        return
    assert gap is not None, f'{int(differs.sum())} px differ and no tie information'
    assert bool((gap[differs] < PANOPTIC_TIE_ATOL).all()), int(differs.sum())
    assert differs.float().mean().item() <= 1e-3


def check_results(mine, ref, variant, pixel_gap=None):
    """Our post-processed results for one image against the official ones. ``pixel_gap``: the tie information of
    :func:`panoptic_pixel_gap` for the panoptic ids (None: they must be equal)."""
    if 'sem_seg_argmax' in ref:
        sem = mine['sem_seg']
        assert list(sem.shape) == ref['sem_seg_shape']
        torch.testing.assert_close(sem[:, ::ref['sem_seg_grid_step'], ::ref['sem_seg_grid_step']],
                                   ref['sem_seg_grid'], rtol=0, atol=5e-6)
        top2 = sem.topk(2, dim=0).values
        differs = sem.argmax(0).to(torch.uint8) != ref['sem_seg_argmax']
        # argmax may only differ where the official top-2 scores are tied to float precision
        assert bool(((top2[0] - top2[1])[differs] < 1e-4).all()), int(differs.sum())
        assert differs.float().mean().item() <= 1e-3
    if 'panoptic_ids' in ref:
        ids, segments = mine['panoptic']
        assert ids.dtype == torch.int32
        assert_panoptic_ids_match(ids, ref['panoptic_ids'], pixel_gap)
        assert segments == ref['segments_info']
    inst, ref_inst = mine['instances'], ref['instances']
    assert len(inst['scores']) == ref_inst['num_instances']
    order, ref_order = inst['flat_index'].argsort(), ref_inst['flat_index'].argsort()
    assert torch.equal(inst['flat_index'][order], ref_inst['flat_index'][ref_order])
    assert torch.equal(inst['query_index'][order], ref_inst['query_index'][ref_order])
    assert torch.equal(inst['labels'][order], ref_inst['pred_classes'][ref_order])
    torch.testing.assert_close(inst['scores'][order], ref_inst['scores'][ref_order], rtol=0,
                               atol=INSTANCE_SCORE_ATOL)
    torch.testing.assert_close(inst['bboxes'][order], ref_inst['pred_boxes'][ref_order], rtol=0, atol=2e-4)
    height, width = ref_inst['image_size']
    ref_masks = torch.from_numpy(np.unpackbits(ref_inst['query_masks_packed'].numpy(), axis=-1,
                                               count=width).astype(bool))
    assert torch.equal(ref_masks.flatten(1).any(1), ref_inst['query_mask_present'])
    mismatch = (inst['masks'][order] != ref_masks[inst['query_index'][order]]).float().mean().item()
    assert mismatch <= 1e-4, mismatch  # pixels whose mask logit is 0 to float precision may flip


def test_postprocessed_results_match(tiny):
    variant, _, ref, ours = tiny
    for out, mine in zip(ref['outputs'], ours):
        check_results(mine['results'], out['results'], variant, mine['pixel_gap'])


def test_postprocess_of_crafted_decoder_outputs_matches(tiny):
    """Multiple thing / stuff segments, stuff merging and the overlap filter (crafted official head outputs)."""
    variant, model, ref, _ = tiny
    synthetic = ref['postprocess_synthetic']
    outputs = {k: v.float() for k, v in synthetic['decoder'].items()}
    meta = dict(img_shape=tuple(synthetic['image_size']), ori_shape=tuple(synthetic['output_size']))
    with CapturePanopticInputs() as panoptic:
        results = model.postprocess(outputs, [meta], tuple(synthetic['padded_size']))
    check_results(results[0], synthetic['results'], variant, panoptic.gap())


def test_predict_packs_mmdet_results(tiny):
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    variant, model, _, ours = tiny
    for mine in ours:
        sample, results = mine['samples'][0], mine['results']
        inst = results['instances']
        torch.testing.assert_close(sample.pred_instances.scores, inst['scores'])
        assert sample.pred_instances.masks.dtype == torch.bool
        if variant == 'panoptic':
            ids, segments = results['panoptic']
            pan = sample.pred_panoptic_seg.sem_seg[0]
            assert bool((pan[ids == 0] == model.panoptic_head.num_classes).all())
            for seg in segments:
                value = seg['category_id'] + (seg['id'] * INSTANCE_OFFSET if seg['isthing'] else 0)
                assert bool((pan[ids == seg['id']] == value).all())
            assert torch.equal(sample.pred_sem_seg.sem_seg[0], results['sem_seg'].argmax(0))


def test_full_size_backbone_gflops_match_token_adapter_table():
    """Swin-L backbone of the MaskDINO config at 1152 x 1152: 936.86 GFLOPs (MACs) in Token Adapter Tab. 2.
    Counted on the meta device (shapes only) with the project's MAC counter."""
    from mmtokred.analysis.flops import count_model_macs
    model = build_on_meta(load_cfg(FULL_CONFIGS['panoptic']))
    counter = count_model_macs(model, torch.zeros(1, 3, 1152, 1152, device='meta'),
                               forward=lambda m, x: m.extract_feat(x))
    assert counter.total() / 1e9 == pytest.approx(936.86, rel=0.01)


def test_batch_of_two_equals_single_images(tiny):
    """The head runs batched (gathers, 'bitmask' boxes per image): a batch of two equals the images alone."""
    variant, model, _, _ = tiny
    if variant != 'instance':
        pytest.skip('one variant suffices; the instance one also covers the bitmask initialisation')
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        batched = model._forward(images)
        singles = [model._forward(images[i:i + 1]) for i in range(2)]
    for i, single in enumerate(singles):
        assert torch.equal(batched['topk_index'][i], single['topk_index'][0])
        for name in ('pred_logits', 'pred_boxes', 'pred_masks'):
            torch.testing.assert_close(batched[name][i], single[name][0], **FP32_TOL, msg=name)


@needs_fixtures
def test_converter_tool_writes_a_loadable_checkpoint(tmp_path):
    import importlib.util as iu
    spec = iu.spec_from_file_location('maskdino2mmdet', osp.join(ROOT, 'tools', 'model_converters',
                                                                 'maskdino2mmdet.py'))
    tool = iu.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'converted.pth'
    tool.main([fixture_path('maskdino_tiny_instance.pth'), str(out)])
    state = torch.load(out, weights_only=True)['state_dict']
    model = build_on_meta(load_cfg(TINY_CONFIGS['instance']))
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_pixel_decoder_ignores_autocast(tiny):
    """Like the official encoder, the pixel decoder runs in fp32 under mixed precision."""
    variant, model, _, _ = tiny
    if variant != 'panoptic':
        pytest.skip('same pixel decoder in both variants')
    torch.manual_seed(0)
    with torch.no_grad():
        feats = list(model.extract_feat(torch.randn(1, 3, 64, 96)))
        plain = model.panoptic_head.pixel_decoder(feats)
        with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
            mixed = model.panoptic_head.pixel_decoder(feats)
    for ours, ref in zip([mixed[0]] + mixed[1], [plain[0]] + plain[1]):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_panoptic_ties_are_allowed_and_nothing_else():
    """The tie-aware comparison: a pixel whose two best queries are tied may change segment, any other may not."""
    logits = torch.tensor([[4.0, -4.0], [4.0, -4.0], [-9.0, -9.0]])     # queries 0 and 1: the same class score
    masks = torch.zeros(3, 2, 2)
    masks[0] = torch.tensor([[3.0, 0.0], [3.0, -3.0]])
    masks[1] = torch.tensor([[-3.0, 0.0], [-3.0, 3.0]])                 # pixel (0, 1): exact tie
    gap = panoptic_pixel_gap(logits, masks)
    assert gap[0, 1] == 0 and bool((gap.flatten()[[0, 2, 3]] > PANOPTIC_TIE_ATOL).all())
    ids = torch.tensor([[1, 1], [1, 2]], dtype=torch.int32)
    tied = torch.tensor([[1, 2], [1, 2]], dtype=torch.uint8)
    assert_panoptic_ids_match(ids, ids.to(torch.uint8), gap)
    big = torch.zeros(40, 40, dtype=torch.int32)                         # one flipped pixel in 1600 (share <= 1e-3)
    big_gap = torch.ones(40, 40)
    big_gap[0, 1] = 0
    flipped = big.to(torch.uint8).clone()
    flipped[0, 1] = 2
    assert_panoptic_ids_match(big, flipped, big_gap)
    with pytest.raises(AssertionError):
        assert_panoptic_ids_match(ids, torch.tensor([[2, 1], [1, 2]], dtype=torch.uint8), gap)   # not a tie
    with pytest.raises(AssertionError):
        assert_panoptic_ids_match(ids, tied, None)
