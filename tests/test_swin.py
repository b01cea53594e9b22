"""Swin host: window token reduction for mmseg's and mmdet's SwinTransformer (tiny models, random weights)."""
import glob
import importlib.util
import os.path as osp

import pytest
import torch

import mmtokred  # noqa: F401  (registers ReducedSwinTransformer)
from mmtokred.hosts import swin as swin_host

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

SCOPES = ['mmseg', 'mmdet']
TA4 = dict(type='TokenAdapter', grid=4)
EX4 = dict(type='Expediting', cluster_grid=4, locality=3, iterations=2, temperature=0.05, topk=4)
POOL4 = dict(type='Pooling', grid=4)


def swin_cfg(**kw):
    # window 6 -> reduced to 4; depths 2, 2, 4, 2 (10 blocks: global indices 0-1, 2-3, 4-7, 8-9)
    cfg = dict(type='SwinTransformer', pretrain_img_size=96, embed_dims=16, depths=(2, 2, 4, 2),
               num_heads=(1, 2, 2, 4), window_size=6, mlp_ratio=2, out_indices=(0, 1, 2, 3))
    cfg.update(kw)
    return cfg


def build(scope, cfg, seed=0):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    torch.manual_seed(seed)
    model = registry.build(cfg)
    model.init_weights()
    with torch.no_grad():   # init_weights leaves the bias tables at zero: give them structure
        for name, p in model.named_parameters():
            if 'relative_position_bias_table' in name:
                p.normal_(0, 0.5)
    model.eval()   # mmseg's SwinTransformer.train() returns None: do not chain
    return model


def pair(scope, **reduced_kw):
    upstream = build(scope, swin_cfg())
    reduced = build(scope, swin_cfg(type='ReducedSwinTransformer', **reduced_kw), seed=1)
    reduced.load_state_dict(upstream.state_dict(), strict=True)
    return upstream, reduced


def run(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize('scope', SCOPES)
def test_state_dict_identical_to_upstream(scope):
    upstream, reduced = pair(scope, reducer=TA4, reduce_after_layer=[1, 5])
    run(reduced, torch.randn(1, 3, 70, 90))          # the resized bias tables are cached, not stored
    shapes = {k: tuple(v.shape) for k, v in upstream.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in reduced.state_dict().items()} == shapes
    assert not any('token_reducer' in k for k in reduced.state_dict())


@pytest.mark.parametrize('scope', SCOPES)
@pytest.mark.parametrize('reducer', [None, dict(type='TokenAdapter', grid=6), dict(type='TokenAdapter', r_h=0, r_w=0),
                                     dict(type='Expediting', cluster_grid=6, topk=4), dict(type='Pooling', ratio=1.0)])
def test_disabled_or_k_equal_K_is_exactly_upstream(scope, reducer):
    upstream, reduced = pair(scope, reducer=reducer, reduce_after_layer=3 if reducer else None)
    assert not reduced.reduction_active
    x = torch.randn(2, 3, 70, 90)
    for a, b in zip(run(upstream, x), run(reduced, x)):
        assert torch.equal(a, b)


@pytest.mark.parametrize('scope', SCOPES)
@pytest.mark.parametrize('reducer', [TA4, EX4, POOL4])
def test_reduced_runs_non_divisible_batched(scope, reducer):
    upstream, reduced = pair(scope, reducer=reducer, reduce_after_layer=[0, 5])
    x = torch.randn(2, 3, 70, 90)    # stage maps 18x23, 9x12, 5x6, 3x3: padded to windows of 6
    outs, ref = run(reduced, x), run(upstream, x)
    assert [o.shape for o in outs] == [o.shape for o in ref]
    assert all(torch.isfinite(o).all() for o in outs)
    assert not torch.equal(outs[2], ref[2])             # stage 2 was reduced
    alone = run(reduced, x[1:])                          # each sample is reduced on its own
    assert all(torch.allclose(o[1:], a, atol=1e-5) for o, a in zip(outs, alone))


def test_reduced_blocks_see_k_windows():
    _, reduced = pair('mmseg', reducer=TA4, reduce_after_layer=5)    # stage 2, blocks 6, 7 reduced
    seen = []
    upstream_attention = swin_host.window_attention

    def spy(w_msa, x, bias, mask):
        seen.append((tuple(x.shape), tuple(bias.shape)))
        return upstream_attention(w_msa, x, bias, mask)
    swin_host.window_attention = spy
    try:
        run(reduced, torch.randn(1, 3, 96, 96))   # stage 2 map 6x6 -> one window -> 4x4
    finally:
        swin_host.window_attention = upstream_attention
    assert seen == [((1, 16, 64), (2, 16, 16))] * 2     # 16 tokens of 64 channels, 2 heads


def test_shift_mask_never_crosses_the_cyclic_wrap():
    """Rebuilt mask == brute force: two tokens of a shifted window may attend iff neither or both wrapped
    around, in each axis. The reference's stale mask (shift of the old window) lets pairs across the wrap."""
    H, W, k = 12, 8, 4
    s = k // 2
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')
    wrap_r = ((rows + s) >= H).float()[None, :, :, None]
    wrap_c = ((cols + s) >= W).float()[None, :, :, None]
    wr = swin_host.window_partition(wrap_r, k).reshape(-1, k * k)
    wc = swin_host.window_partition(wrap_c, k).reshape(-1, k * k)
    allowed = (wr[:, :, None] == wr[:, None, :]) & (wc[:, :, None] == wc[:, None, :])
    mask = swin_host.shift_window_mask(H, W, k, s)
    assert torch.equal(mask == 0, allowed)
    stale = swin_host.shift_window_mask(H, W, k, s, mask_shift=3)    # as if the old window 6 still shifted by 3
    assert ((stale == 0) & ~allowed).any()


def test_reference_shift_mask_flag_changes_shifted_blocks_only():
    x = torch.randn(1, 3, 192, 192)                     # stage 2: 12x12 map, two windows per side
    _, fixed = pair('mmseg', reducer=TA4, reduce_after_layer=5)
    _, stale = pair('mmseg', reducer=TA4, reduce_after_layer=5, reference_shift_mask=True)
    a, b = run(fixed, x), run(stale, x)
    assert torch.equal(a[1], b[1]) and not torch.allclose(a[2], b[2])


def test_shift_mask_built_once_per_shape(monkeypatch):
    """The shifted blocks of a span and repeated forwards at one input size share one mask; a new size builds
    its own, equal to a fresh one."""
    calls = []
    build_mask = swin_host.shift_window_mask
    monkeypatch.setattr(swin_host, 'shift_window_mask', lambda *a: calls.append(a) or build_mask(*a))
    _, reduced = pair('mmseg', reducer=TA4, reduce_after_layer=5)
    x = torch.randn(1, 3, 192, 192)
    first = run(reduced, x)
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(first, run(reduced, x))) and len(calls) == 1
    run(reduced, torch.randn(1, 3, 224, 192))
    assert len(calls) == 2


def test_reference_shift_mask_must_be_a_bool():
    with pytest.raises(TypeError, match=r'reference_shift_mask must be True or False, got 1'):
        pair('mmseg', reducer=TA4, reduce_after_layer=5, reference_shift_mask=1)


@pytest.mark.parametrize('reducer', [TA4, EX4, POOL4])
def test_padding_does_not_leak(reducer, monkeypatch):
    """The span covers a whole stage, so every block that sees padding is a reduced one: filling the padding with
    garbage instead of zeros must leave the real area unchanged."""
    _, reduced = pair('mmseg', reducer=reducer, reduce_after_layer=3)   # stage 2 (blocks 4-7), map 5x6 -> 6x6
    x = torch.randn(2, 3, 70, 90)
    clean = run(reduced, x)
    upstream_pad = swin_host.F.pad

    def garbage_pad(t, pad, *args, **kwargs):
        out = upstream_pad(t, pad, *args, **kwargs)
        keep = upstream_pad(torch.ones_like(t), pad, *args, **kwargs).bool()
        return torch.where(keep, out, 5 * torch.randn_like(out))
    monkeypatch.setattr(swin_host, 'F', type('F', (), {'pad': staticmethod(garbage_pad)}))
    dirty = run(reduced, x)
    for a, b in zip(clean, dirty):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_compiled_equals_eager_without_graph_break():
    """torch.compile (dynamic=False, a backend that runs the captured graphs as is) of the reduced Swin with
    Expediting per window on a padded map (the valid-mask path) and shifted reduced blocks: one graph (no graph
    break: the resized bias is computed in the graph, the reducer keeps the host's padding mask), outputs equal
    eager ones within 1e-5, no recompilation on the second call."""
    _, reduced = pair('mmseg', reducer=EX4, reduce_after_layer=3)   # stage 2 (blocks 4-7), map 5x6 -> 6x6
    x = torch.randn(2, 3, 70, 90)
    eager, compiled, again, _, graphs = helpers.compile_twice(reduced, x)
    for e, c, c2 in zip(eager, compiled, again):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c2, e, atol=1e-5, rtol=1e-5)
    assert graphs == 1, f'{graphs - 1} graph breaks'


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('reducer', [TA4, EX4])
def test_low_precision_outputs_finite(dtype, reducer):
    # under autocast: upstream Swin itself cannot run model.half() (its SW-MSA mask is built in fp32)
    _, reduced = pair('mmdet', reducer=reducer, reduce_after_layer=5)
    with torch.autocast('cpu', dtype=dtype):
        outs = run(reduced, torch.randn(2, 3, 70, 90))
    assert all(torch.isfinite(o).all() for o in outs)


def test_autocast_reduce_restore_in_fp32():
    _, reduced = pair('mmdet', reducer=TA4, reduce_after_layer=5)
    autocast_seen = []
    reducer = reduced.token_reducers[0]
    upstream_forward = reducer.forward

    def forward(*args):
        autocast_seen.append(torch.is_autocast_enabled('cpu'))
        return upstream_forward(*args)
    reducer.forward = forward
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = run(reduced, torch.randn(1, 3, 70, 90))
    assert autocast_seen == [False] and all(torch.isfinite(o).all() for o in outs)


def test_bias_cache_follows_loaded_weights():
    upstream, reduced = pair('mmseg', reducer=TA4, reduce_after_layer=5)
    x = torch.randn(1, 3, 96, 96)
    before = run(reduced, x)
    other = build('mmseg', swin_cfg(), seed=7)
    reduced.load_state_dict(other.state_dict())
    after = run(reduced, x)
    fresh = build('mmseg', swin_cfg(type='ReducedSwinTransformer', reducer=TA4, reduce_after_layer=5))
    fresh.load_state_dict(other.state_dict())
    assert not torch.allclose(before[2], after[2])
    assert torch.equal(after[2], run(fresh, x)[2])


@pytest.mark.parametrize('kw, message', [
    (dict(reducer=dict(type='ToMe', ratio=0.3), reduce_after_layer=3), 'returns a token set'),
    (dict(reducer=dict(type='EViT', keep_rate=0.5), reduce_after_layer=3), 'has none'),
    (dict(reducer=dict(type='TokenAdapter', r_h=0.3, r_w=0.3, importance='attention'), reduce_after_layer=3),
     'has none'),
    (dict(reducer=dict(type='ToMe', ratio=0.3, mode='sub_block'), reduce_after_layer=3), 'returns a token set'),
    (dict(reducer=dict(type='TokenAdapter', grid=7), reduce_after_layer=3), 'does not fit the 6x6'),
    (dict(reducer=dict(type='TokenAdapter', grid=0), reduce_after_layer=3), r'grid\[0\] must be an integer'),
    (dict(reducer=dict(type='Pooling', grid=(4, 3)), reduce_after_layer=3), 'must become k x k'),
    (dict(reducer=TA4, reduce_after_layer=9), r'in \[-1, 8\]'),
    (dict(reducer=TA4, reduce_after_layer=1.5), r'in \[-1, 8\]'),
    (dict(reducer=TA4, reduce_after_layer=3, restore_after_layer=8), 'must not cross PatchMerging'),
    (dict(reducer=TA4, reduce_after_layer=3, restore_after_layer=3), r'in \[4, 7\]'),
    (dict(reducer=TA4, reduce_after_layer=[4, 5]), 'two spans in stage 2'),
    (dict(reducer=TA4), 'reduce_after_layer is required'),
])
def test_bad_settings_name_the_parameter(kw, message):
    with pytest.raises(ValueError, match=message):
        build('mmdet', swin_cfg(type='ReducedSwinTransformer', **kw))


TINY_REDUCED = sorted(glob.glob(osp.join(helpers.CONFIGS, 'tiny', 'mask2former_tiny_*_*.py'))
                      + glob.glob(osp.join(helpers.CONFIGS, 'tiny', 'maskdino_tiny_*_*.py')))
FULL_REDUCED = sorted(glob.glob(osp.join(helpers.CONFIGS, 'maskdino_swinl_*_*.py')))   # Mask2Former's: test_mask2former


@pytest.mark.parametrize('config', FULL_REDUCED, ids=[osp.basename(p) for p in FULL_REDUCED])
def test_full_size_reduced_maskdino_state_dict_is_upstream(config):
    cfg = helpers.load_cfg(config)
    model = helpers.build_model_on_meta(cfg)
    plain = helpers.build_model_on_meta(helpers.load_cfg(config.replace('_expedit', '').replace('_tokenadapter', '')))
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert type(model.backbone).__name__ == 'ReducedSwinTransformer' and model.backbone.reduction_active


@pytest.mark.parametrize('config', TINY_REDUCED, ids=[osp.basename(p) for p in TINY_REDUCED])
def test_tiny_reduced_mask2former_configs(config):
    """The reduced tiny configs keep the unreduced model's state dict and run a non-divisible batch of 2."""
    cfg = helpers.load_cfg(config)
    model = helpers.build_model(cfg)
    plain = osp.join(osp.dirname(config), osp.basename(config).replace('_expedit', '').replace('_tokenadapter', ''))
    upstream = helpers.build_model(helpers.load_cfg(plain))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in upstream.state_dict().items()}
    assert model.backbone.reduction_active
    with torch.no_grad():
        feats = model.backbone(torch.randn(2, 3, 75, 99))
    assert [f.shape[-2:] for f in feats] == [f.shape[-2:] for f in upstream.backbone(torch.randn(2, 3, 75, 99))]
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize('scope', SCOPES)
def test_insert_token_reduction_on_a_built_swin(scope):
    """The same reduction inserted into an upstream-built backbone (or a detector / segmentor around it) equals the
    reduced class built from a config; a failing insert leaves the backbone untouched."""
    upstream, reduced = pair(scope, reducer=EX4, reduce_after_layer=5)
    x = torch.randn(1, 3, 70, 90)
    before = run(upstream, x)
    state = {k: v.clone() for k, v in upstream.state_dict().items()}
    with pytest.raises(ValueError, match='token set'):
        mmtokred.insert_token_reduction(upstream, dict(type='ToMe', ratio=0.3), reduce_after_layer=5)
    with pytest.raises(ValueError, match='restore_site'):
        mmtokred.insert_token_reduction(upstream, EX4, reduce_after_layer=5, restore_site='head')
    assert type(upstream).__name__ == 'SwinTransformer'
    assert all(torch.equal(a, b) for a, b in zip(before, run(upstream, x)))
    mmtokred.insert_token_reduction(upstream, EX4, reduce_after_layer=5)
    assert type(upstream).__name__ == 'ReducedSwinTransformer'
    assert all(torch.equal(a, b) for a, b in zip(run(upstream, x), run(reduced, x)))
    assert {k: v.shape for k, v in upstream.state_dict().items()} == {k: v.shape for k, v in state.items()}


def test_early_check_uses_the_swin_validator():
    from mmengine.config import Config

    from mmtokred.hosts.settings import check_reduction_settings
    from mmtokred.utils.cli import InputError
    cfg = Config(dict(model=dict(backbone=swin_cfg(type='ReducedSwinTransformer', reducer=TA4,
                                                   reduce_after_layer=3, restore_after_layer=8))))
    with pytest.raises(InputError, match='model.backbone: .*must not cross PatchMerging'):
        check_reduction_settings(cfg)
    hook = Config(dict(model=dict(backbone=swin_cfg()), custom_hooks=[
        dict(type='TokenReductionHook', reducer=dict(type='EViT'), reduce_after_layer=3)]))
    with pytest.raises(InputError, match=r'custom_hooks\[0\] .*has none'):
        check_reduction_settings(hook)
    hook.custom_hooks[0].reducer = TA4
    check_reduction_settings(hook)
