"""Host integration: the ViT wrapper, the segmentor, the insertion function and hook, state dicts."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch

from mmtokred import reduction_plan

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

TINY = 'configs/tiny/segmenter_tiny_ade.py'
TINY_TA = 'configs/tiny/segmenter_tiny_tokenadapter_ade.py'
TINY_EX = 'configs/tiny/segmenter_tiny_expedit_ade.py'
TINY_TOME = 'configs/tiny/segmenter_tiny_tome_ade.py'


def tiny_backbone_cfg(**kw):
    cfg = dict(type='VisionTransformer', img_size=(64, 80), patch_size=8, embed_dims=32, num_layers=6, num_heads=2,
               mlp_ratio=2, out_indices=(2, 5), final_norm=True, with_cls_token=True, interpolate_mode='bicubic')
    cfg.update(kw)
    return cfg


def build_backbone(cfg):
    from mmseg.registry import MODELS

    import mmtokred  # noqa: F401
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.eval()  # mmseg's VisionTransformer.train() returns None: do not chain
    return model


def keys_and_shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('reducer', [None, dict(type='TokenAdapter', r_h=0.0, r_w=0.0),
                                     dict(type='Expediting', cluster_ratio=1.0), dict(type='ToMe', ratio=0.0),
                                     dict(type='ToMe', ratio=0.0, mode='sub_block')])
def test_reduction_off_is_exactly_upstream(reducer):
    upstream = build_backbone(tiny_backbone_cfg())
    reduced = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', reducer=reducer,
                                               reduce_after_layer=1 if reducer else None))
    reduced.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        a, b = upstream(x), reduced(x)
    assert len(a) == len(b) == 2
    for u, r in zip(a, b):
        assert torch.equal(u, r)


def test_token_adapter_runs_wrapped_blocks_on_28x28():
    """640x640 / 16 = 40x40 tokens; r_h = r_w = 0.3 -> the wrapped blocks see 28x28 (+ cls) tokens."""
    bb = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', img_size=(640, 640), patch_size=16,
                                          embed_dims=16, num_layers=4, out_indices=(1, 3),
                                          reducer=dict(type='TokenAdapter', r_h=0.3, r_w=0.3),
                                          reduce_after_layer=0, restore_after_layer=2))
    seen = {}
    for i, layer in enumerate(bb.layers):
        layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].shape[1]))
    with torch.no_grad():
        outs = bb(torch.randn(1, 3, 640, 640))
    assert seen == {0: 1601, 1: 785, 2: 785, 3: 1601}
    # out index 1 lies inside the span: a restored full-resolution copy
    assert [tuple(o.shape) for o in outs] == [(1, 16, 40, 40), (1, 16, 40, 40)]


@pytest.mark.parametrize('kw,match', [
    (dict(reduce_after_layer=6), 'reduce_after_layer must be an integer.*in \\[-1, 5\\]'),
    (dict(reduce_after_layer=-2), 'reduce_after_layer'),
    (dict(reduce_after_layer=[0, -1]), 'increasing order'),
    (dict(reduce_after_layer=3, restore_after_layer=2), 'must come after'),
    (dict(reduce_after_layer=3, restore_after_layer=3), 'must come after'),
    (dict(reduce_after_layer=1, restore_after_layer=9), 'restore_after_layer must be an integer in \\[0, 5\\]'),
    (dict(reduce_after_layer=1, restore_site='neck'), 'restore_site'),
    (dict(reduce_after_layer=1, restore_after_layer=3, restore_site='head'), 'last layer'),
    (dict(), 'reduce_after_layer is required'),
])
def test_bad_insertion_layers(kw, match):
    cfg = tiny_backbone_cfg(type='ReducedVisionTransformer', reducer=dict(type='TokenAdapter'), **kw)
    with pytest.raises(ValueError, match=match):
        build_backbone(cfg)


def test_unsupported_host_is_rejected():
    from mmtokred import insert_token_reduction
    with pytest.raises(TypeError, match='not supported'):
        insert_token_reduction(torch.nn.Module(), dict(type='TokenAdapter'), 1)


def test_head_restore_without_segmentor_support_is_an_error():
    bb = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', reducer=dict(type='TokenAdapter'),
                                          reduce_after_layer=2, restore_site='head'))
    with pytest.raises(RuntimeError, match='TokenReductionEncoderDecoder'):
        bb(torch.randn(1, 3, 64, 80))


def _predict_logits(model, x):
    metas = [dict(img_shape=x.shape[-2:], ori_shape=x.shape[-2:], pad_shape=x.shape[-2:], padding_size=[0] * 4)
             for _ in range(x.shape[0])]
    with torch.no_grad():
        return model.inference(x, metas)


@pytest.mark.parametrize('config', [TINY_TA, TINY_EX, TINY_TOME])
def test_tiny_configs_keep_upstream_state_dict_and_predict(config):
    upstream = helpers.build_model(helpers.load_cfg(TINY))
    reduced = helpers.build_model(helpers.load_cfg(config))
    assert keys_and_shapes(reduced) == keys_and_shapes(upstream)
    reduced.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 128)
    logits = _predict_logits(reduced, x)
    assert logits.shape == (2, 150, 96, 128)
    assert torch.isfinite(logits).all()


def test_insert_function_and_hook_equal_config_built_model():
    from mmtokred import TokenReductionHook, insert_token_reduction
    cfg = helpers.load_cfg(TINY_EX)
    by_config = helpers.build_model(cfg)
    upstream = helpers.build_model(helpers.load_cfg(TINY))
    by_config.load_state_dict(upstream.state_dict(), strict=True)
    red_cfg = cfg.model.backbone
    kwargs = dict(reducer=dict(red_cfg.reducer), reduce_after_layer=red_cfg.reduce_after_layer,
                  restore_site='head')
    inserted = insert_token_reduction(copy.deepcopy(upstream), **kwargs)
    assert keys_and_shapes(inserted) == keys_and_shapes(upstream)
    x = torch.randn(1, 3, 96, 128)
    expected = _predict_logits(by_config, x)
    assert torch.equal(_predict_logits(inserted, x), expected)

    class FakeRunner:
        model = copy.deepcopy(upstream)
    TokenReductionHook(**kwargs).before_run(FakeRunner)
    assert torch.equal(_predict_logits(FakeRunner.model, x), expected)
    assert not torch.equal(_predict_logits(upstream, x), expected)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('config', [TINY_TA, TINY_EX, TINY_TOME])
def test_half_precision_model_outputs_are_finite(config, dtype):
    model = helpers.build_model(helpers.load_cfg(config)).to(dtype)
    x = torch.randn(1, 3, 96, 128, dtype=dtype)
    try:
        logits = _predict_logits(model, x)
    except RuntimeError as e:  # pragma: no cover - depends on the torch build
        if 'not implemented' in str(e):
            pytest.skip(f'{dtype} op missing on CPU: {e}')
        raise
    assert logits.dtype == dtype and torch.isfinite(logits.float()).all()


def test_evit_multi_site_prunes_inside_layers_and_restores():
    bb = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', out_indices=(3, 5),
                                          reducer=dict(type='EViT', keep_rate=0.5, fuse=True),
                                          reduce_after_layer=[1, 3], restore_after_layer=5))
    seen = {}
    for i, layer in enumerate(bb.layers):
        layer.ffn.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].shape[1]))
    with torch.no_grad():
        outs = bb(torch.randn(2, 3, 64, 80))
    # 80 patches -> 40 kept (+1 fused) at layer 1, 41 -> 21 kept (+1 fused) at layer 3; MLPs of those layers reduced
    assert seen == {0: 81, 1: 42, 2: 42, 3: 23, 4: 23, 5: 23}
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 10), (2, 32, 8, 10)]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('reducer', [dict(type='EViT', keep_rate=1.0), dict(type='MSTM', keep_rate=1.0)])
def test_keep_rate_one_equals_upstream(reducer):
    upstream = build_backbone(tiny_backbone_cfg())
    reduced = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', reducer=reducer,
                                               reduce_after_layer=[1, 3]))
    reduced.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        for u, r in zip(upstream(x), reduced(x)):
            assert torch.equal(u, r)


def test_attention_reducer_with_full_keep_inside_layer_matches_upstream_numerically():
    """keep_rate close to 1 still runs the manual attention path: it must compute what the layer computes."""
    upstream = build_backbone(tiny_backbone_cfg())
    reduced = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer',
                                               reducer=dict(type='MSTM', keep_rate=0.999),
                                               reduce_after_layer=2))
    reduced.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        for u, r in zip(upstream(x), reduced(x)):
            torch.testing.assert_close(u, r, rtol=1e-5, atol=1e-5)   # ceil(0.999 * 80) = 80 tokens kept


@pytest.mark.parametrize('reducer', [dict(type='EViT'), dict(type='MSTM'),
                                     dict(type='TokenAdapter', importance='attention')])
def test_attention_reducers_need_a_cls_token(reducer):
    with pytest.raises(ValueError, match='with_cls_token=False'):
        build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', with_cls_token=False, reducer=reducer,
                                         reduce_after_layer=1))


def test_reduce_before_the_first_layer():
    """reduce_after_layer=-1 reduces the patch embeddings: every layer runs on the reduced grid."""
    bb = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', img_size=(96, 80), out_indices=(2, 5),
                                          reducer=dict(type='TokenAdapter', r_h=0.25, r_w=0.2, eject_mode='max'),
                                          reduce_after_layer=-1, restore_after_layer=5))
    seen = {}
    for i, layer in enumerate(bb.layers):
        layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].shape[1]))
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        outs = bb(x)
    assert seen == {i: 1 + 9 * 8 for i in range(6)}   # 12x10 -> 9x8 tokens (+ cls) from the first layer on
    assert [tuple(o.shape) for o in outs] == [(2, 32, 12, 10), (2, 32, 12, 10)]
    # the reducer saw exactly the embedded patches: reducing them by hand gives the first layer's input
    captured = {}
    bb.layers[0].register_forward_pre_hook(lambda m, inp: captured.__setitem__('x', inp[0]))
    with torch.no_grad():
        bb(x)
        emb, hw = bb.patch_embed(x)
        emb = bb._pos_embeding(torch.cat([bb.cls_token.expand(2, -1, -1), emb], 1), hw, bb.pos_embed)
        reduced = reduction_plan(bb).reducer(emb[:, 1:].reshape(2, *hw, -1), None).tokens
    assert torch.equal(captured['x'][:, 1:], reduced) and torch.equal(captured['x'][:, 0], emb[:, 0])


@pytest.mark.parametrize('reducer', [dict(type='EViT'), dict(type='TokenAdapter', importance='attention')])
def test_attention_reducers_cannot_run_before_the_first_layer(reducer):
    with pytest.raises(ValueError, match='reduce_after_layer=-1'):
        build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', reducer=reducer, reduce_after_layer=-1))


def test_token_adapter_layer_by_layer_variant():
    bb = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', img_size=(96, 96), out_indices=(5,),
                                          reducer=dict(type='TokenAdapter', r_h=0.1, r_w=0.1, unique_ratio_h=0,
                                                       unique_ratio_w=0),
                                          reduce_after_layer=[0, 1, 2, 3], restore_after_layer=5))
    seen = {}
    for i, layer in enumerate(bb.layers):
        layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].shape[1]))
    with torch.no_grad():
        out = bb(torch.randn(1, 3, 96, 96))[0]
    # 12x12 -> 11x11 -> 10x10 -> 9x9 -> 8x8 (one row and one column per layer)
    assert seen == {0: 145, 1: 122, 2: 101, 3: 82, 4: 65, 5: 65}
    assert out.shape == (1, 32, 12, 12)


def test_input_downsampling_baseline():
    cfg = helpers.load_cfg(TINY, **{'model.type': 'TokenReductionEncoderDecoder', 'model.input_scale': 0.5})
    model = helpers.build_model(cfg)
    logits = _predict_logits(model, torch.randn(1, 3, 96, 128))
    assert logits.shape == (1, 150, 96, 128)
    with pytest.raises(ValueError, match='input_scale'):
        helpers.build_model(helpers.load_cfg(TINY, **{'model.type': 'TokenReductionEncoderDecoder',
                                                      'model.input_scale': 1.5}))


@pytest.mark.parametrize('mode,calls_per_layer', [('sub_block', 2), ('mlp', 1)])
def test_tome_sub_block_modes_reduce_the_declared_sub_blocks(mode, calls_per_layer):
    """'sub_block' (Expediting's baseline) merges around attention and MLP, 'mlp' (ToCom's dense variant, Tab. 11)
    around the MLP only: one reducer call per declared sub-block of every layer of the span."""
    upstream = build_backbone(tiny_backbone_cfg())
    reduced = build_backbone(tiny_backbone_cfg(type='ReducedVisionTransformer', reduce_after_layer=2,
                                               reducer=dict(type='ToMe', ratio=0.4, mode=mode)))
    reduced.load_state_dict(upstream.state_dict())
    calls = []
    reduction_plan(reduced).reducer.register_forward_hook(lambda m, i, o: calls.append(o.tokens.shape[1]))
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        out, ref = reduced(x), upstream(x)
    assert len(calls) == 3 * calls_per_layer and set(calls) == {80 - 32}     # layers 3-5; 80 tokens, 40% merged
    assert torch.equal(out[0], ref[0]) and not torch.allclose(out[1], ref[1])
