"""Issue 20 options: the scale-free Expediting temperature and the Token Adapter's options beyond the paper
(relative m-threshold, LayerNorm'd matching, redundancy line score with separate drops, local injector, soft
ejector, the paper preset). Pure PyTorch except the Swin-host test."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmtokred.reducers import Expediting, TokenAdapter
from mmtokred.reducers.expediting import (
    initial_cell_labels,
    local_token_clustering,
    reconstruction_weights,
    restore_by_weights,
)
from mmtokred.reducers.pooling import resize_tokens
from mmtokred.reducers.token_adapter import PAPER_PRESET, redundancy_line_scores

OPTIONS = [
    dict(threshold_mode='relative', threshold=0.05),
    dict(importance='redundancy', separate_drops=True, eject_mode='max'),
    dict(match_features='layernorm'),
    dict(injector='local', eject_mode='max'),
    dict(eject_mode='soft'),
    dict(eject_mode='soft', eject_radius=0),
    dict(eject_mode='soft', eject_radius=None, eject_topk=3),
    dict(importance='redundancy', separate_drops=True, match_features='layernorm', injector='local',
         eject_mode='soft', eject_radius=1),
]
OPTION_IDS = ['relative-m-threshold', 'redundancy', 'layernorm', 'local-injector', 'soft-local', 'soft-radius0',
              'soft-global', 'all']
RELATIVE_EXPEDITING = dict(temperature_mode='relative', temperature=6.0, topk=5, locality=3, iterations=3)


spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
smooth_tokens = helpers.smooth_tokens


def reducers():
    out = [TokenAdapter(r_h=0.3, r_w=0.25, **kw) for kw in OPTIONS]
    return out + [Expediting(cluster_ratio=0.7, **RELATIVE_EXPEDITING)]


IDS = OPTION_IDS + ['expediting-relative']


@pytest.mark.parametrize('index', range(len(IDS)), ids=IDS)
@pytest.mark.parametrize('shape', [(2, 13, 17, 24), (3, 20, 9, 8)])
def test_batch_equals_per_sample_on_non_square_grids(index, shape):
    reducer = reducers()[index]
    x = smooth_tokens(*shape)
    red = reducer(x)
    y = red.tokens * 2 + 1
    out = red.restore(y)
    assert out.shape == (*shape[:3], shape[3])
    for b in range(shape[0]):
        single = reducer(x[b:b + 1])
        torch.testing.assert_close(single.tokens, red.tokens[b:b + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(single.restore(single.tokens * 2 + 1), out[b:b + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('index', range(len(IDS)), ids=IDS)
def test_padding_never_enters_scores_matching_or_restore(index):
    reducer = reducers()[index]
    x = smooth_tokens(2, 11, 13, 8)
    valid = torch.ones(2, 11, 13, dtype=torch.bool)
    valid[:, 9:] = False
    valid[1, :, 10:] = False
    a = reducer(x, valid=valid)
    b = reducer(torch.where(valid[..., None], x, 10 * torch.randn_like(x)), valid=valid)
    keep = a.valid
    assert keep is not None and keep.any(1).all()
    torch.testing.assert_close(a.tokens[keep], b.tokens[keep])
    y = torch.randn(a.tokens.shape)
    y_b = torch.where(b.valid[..., None], y, 1e3 * torch.randn_like(y))   # padding-only reduced tokens: anything
    torch.testing.assert_close(a.restore(y)[valid], b.restore(y_b)[valid])


@pytest.mark.parametrize('index', range(len(IDS)), ids=IDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_finite(index, dtype):
    x = (smooth_tokens(2, 16, 12, 64) * 60).to(dtype)
    red = reducers()[index](x)
    out = red.restore(red.tokens)
    assert red.tokens.dtype == dtype and out.dtype == dtype
    assert torch.isfinite(red.tokens.float()).all() and torch.isfinite(out.float()).all()


@pytest.mark.parametrize('kw', OPTIONS, ids=OPTION_IDS)
def test_disabled_is_identity(kw):
    x = smooth_tokens(2, 7, 9, 5)
    reducer = TokenAdapter(r_h=0.0, r_w=0.0, **kw)
    assert not reducer.enabled
    red = reducer(x)
    assert torch.equal(red.restore(red.tokens), x)


# ---------------------------------------------------------------------------------------------- Expediting
def test_relative_temperature_is_scale_free():
    """Multiplying the features by a constant scales the centres by it and leaves the weights unchanged; the
    absolute (reference) temperature does not have this property."""
    x = smooth_tokens(2, 12, 15, 16).double()
    for mode, scale_free in (('relative', True), ('absolute', False)):
        reducer = Expediting(cluster_grid=(8, 10), temperature=2.0 if mode == 'relative' else 0.5,
                             temperature_mode=mode, topk=5)
        a, b = reducer(x), reducer(100 * x)
        y = torch.randn(a.tokens.shape, dtype=torch.float64)
        close = torch.allclose(b.tokens / 100, a.tokens, atol=1e-4) and torch.allclose(a.restore(y), b.restore(y),
                                                                                      atol=1e-4)
        assert close == scale_free


def test_relative_temperature_is_the_reference_at_t_over_s():
    """Relative mode is the reference algorithm with temperature t / s, s = the sample's mean squared distance to
    its nearest initial centre (the pooled cells; a window covering the whole grid makes every centre allowed)."""
    x = smooth_tokens(2, 10, 12, 8).double()
    pooled = resize_tokens(x, (10, 12), (5, 6), 'avg').reshape(2, -1, 8)
    s = torch.cdist(x.reshape(2, -1, 8), pooled).square().amin(-1).mean(-1)            # (2,)
    relative = Expediting(cluster_grid=(5, 6), locality=11, iterations=3, temperature=3.0, topk=4,
                          temperature_mode='relative', normalize='sum')(x)
    y = torch.randn(2, 30, 3, dtype=torch.float64)
    for b in range(2):
        absolute = Expediting(cluster_grid=(5, 6), locality=11, iterations=3, temperature=float(3.0 / s[b]), topk=4,
                              normalize='sum')(x[b:b + 1])
        torch.testing.assert_close(relative.tokens[b:b + 1], absolute.tokens)
        torch.testing.assert_close(relative.restore(y)[b:b + 1], absolute.restore(y[b:b + 1]))
    _, weight = reconstruction_weights(x.reshape(2, -1, 8), pooled, 4, torch.tensor([1.0, 1e9]).double(), 'sum')
    assert (weight[1, :, 0] == 1).all() and (weight[0, :, 0] < 1).any()     # a per-sample temperature


@pytest.mark.parametrize('tile', [1, 2])
def test_relative_scale_counts_only_each_tokens_own_window(tile):
    """With a 3x3 window the nearest initial centre is searched among the allowed ones only (not the masked tile
    candidates): relative t equals the reference at t / s with s computed by brute force."""
    x = smooth_tokens(1, 12, 16, 8).double()
    h, w = 6, 8
    pooled = resize_tokens(x, (12, 16), (h, w), 'avg').reshape(-1, 8)
    rows, cols = initial_cell_labels(12, 16, h, w)
    cy, cx = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
    allowed = ((rows.repeat_interleave(16)[:, None] - cy).abs() <= 1) & ((cols.repeat(12)[:, None] - cx).abs() <= 1)
    d = torch.cdist(x.reshape(-1, 8), pooled).square().masked_fill(~allowed, float('inf'))
    s = float(d.amin(-1).mean())
    kw = dict(cluster_grid=(h, w), locality=3, iterations=3, topk=4, tile=tile, normalize='sum')
    relative = Expediting(temperature=5.0, temperature_mode='relative', **kw)(x)
    absolute = Expediting(temperature=5.0 / s, **kw)(x)
    torch.testing.assert_close(relative.tokens, absolute.tokens)
    y = torch.randn(1, h * w, 3, dtype=torch.float64)
    torch.testing.assert_close(relative.restore(y), absolute.restore(y))


def test_relative_clustering_uses_one_scale_per_sample():
    """Batched samples (Swin windows) of very different scales cluster as they would alone."""
    x = torch.cat([smooth_tokens(1, 9, 9, 8), 1e3 * smooth_tokens(1, 9, 9, 8, seed=1)])
    both = local_token_clustering(x, 5, 5, 3, 3, 2.0, tile=2, temperature_mode='relative')[0]
    for b in range(2):
        alone = local_token_clustering(x[b:b + 1], 5, 5, 3, 3, 2.0, tile=2, temperature_mode='relative')[0]
        torch.testing.assert_close(both[b:b + 1], alone, rtol=1e-5, atol=1e-5 * float(x[b].abs().max()))


def test_expediting_temperature_mode_is_checked():
    with pytest.raises(ValueError, match=r"temperature_mode must be one of \['absolute', 'relative'\]"):
        Expediting(cluster_grid=4, temperature_mode='auto')
    assert Expediting(cluster_grid=8).temperature_mode == 'absolute'     # the reference stays the default


# ---------------------------------------------------------------------------------------------- Token Adapter
def test_paper_preset_is_the_default_and_literal():
    """The signature defaults are the preset (configs and compensator degrees compare settings with the defaults
    filled in from the signature); None takes the preset's value."""
    import inspect
    defaults = {n: p.default for n, p in inspect.signature(TokenAdapter.__init__).parameters.items()}
    assert {k: defaults[k] for k in PAPER_PRESET} == PAPER_PRESET and defaults['preset'] == 'paper'
    assert TokenAdapter(importance=None).importance == 'max'
    t = TokenAdapter()
    for key, value in PAPER_PRESET.items():
        assert getattr(t, key) == value
    assert (t.importance, t.eject_mode, t.threshold, t.threshold_mode, t.injector) == (
        'max', 'm-threshold', 0.02, 'absolute', 'global')
    assert TokenAdapter(injector='local').injector == 'local'             # an explicit option overrides the preset


def test_relative_m_threshold_is_relative_to_the_best_match():
    x = smooth_tokens(1, 9, 10, 6)
    red = TokenAdapter(r_h=0.3, r_w=0.3, threshold_mode='relative', threshold=0.1)(x)
    y = torch.randn(1, red.tokens.shape[1], 3)
    sim = F.normalize(x.reshape(1, -1, 6), dim=-1) @ F.normalize(red.tokens, dim=-1).transpose(1, 2)
    member = (sim >= sim.amax(-1, keepdim=True) - 0.1).double()
    expected = (member / member.sum(-1, keepdim=True)) @ y.double()
    torch.testing.assert_close(red.restore(y).reshape(1, -1, 3).double(), expected, rtol=1e-5, atol=1e-5)
    # absolute 0.1 on the same tokens differs (a token far from everything averages nothing there)
    absolute = TokenAdapter(r_h=0.3, r_w=0.3, threshold=0.1)(x)
    assert not torch.allclose(absolute.restore(y), red.restore(y))


def test_redundancy_scores_match_brute_force():
    x = smooth_tokens(1, 5, 6, 4)
    rows, cols = redundancy_line_scores(x)
    xn = F.normalize(x[0], dim=-1)

    def line_score(i, axis):
        n = x.shape[1 + axis]
        sims = []
        for k in (i - 1, i + 1):
            if 0 <= k < n:
                a = xn[i] if axis == 0 else xn[:, i]
                b = xn[k] if axis == 0 else xn[:, k]
                sims.append((a * b).sum(-1))
        return 1 - torch.cat(sims).mean()
    torch.testing.assert_close(rows[0], torch.stack([line_score(i, 0) for i in range(5)]))
    torch.testing.assert_close(cols[0], torch.stack([line_score(j, 1) for j in range(6)]))


def test_separate_drops_never_drop_adjacent_lines():
    x = smooth_tokens(3, 20, 16, 8)
    for importance in ('redundancy', 'max'):
        red = TokenAdapter(r_h=0.4, r_w=0.3, importance=importance, separate_drops=True, eject_mode='max')(x)
        for lines, n in ((red.info['rows'], 20), (red.info['cols'], 16)):
            for kept in lines.tolist():
                dropped = sorted(set(range(n)) - set(kept))
                assert all(b - a > 1 for a, b in zip(dropped, dropped[1:]))


def test_local_injector_picks_the_most_similar_neighbouring_representative():
    x = smooth_tokens(1, 10, 11, 6)
    red = TokenAdapter(r_h=0.3, r_w=0.3, unique_ratio_h=0.2, unique_ratio_w=0.2, injector='local',
                       eject_mode='max')(x)
    info = red.info
    rows, cols = info['rows'][0].tolist(), info['cols'][0].tolist()
    rep_rows = [p for p, u in enumerate(info['row_unique'][0].tolist()) if not u]
    rep_cols = [p for p, u in enumerate(info['col_unique'][0].tolist()) if not u]

    def around(line, kept, reps):
        before = [p for p in reps if kept[p] <= line]
        after = [p for p in reps if kept[p] >= line]
        return {max(before) if before else min(after), min(after) if after else max(before)}
    for flat, target in zip(info['normal_flat'][0].tolist(), info['normal_target'][0].tolist()):
        i, j = divmod(flat, 11)
        cands = [p * len(cols) + q for p in around(i, rows, rep_rows) for q in around(j, cols, rep_cols)]
        sims = {c: float(F.cosine_similarity(x[0, i, j], x[0, rows[c // len(cols)], cols[c % len(cols)]], dim=0))
                for c in cands}
        assert target in cands and sims[target] == pytest.approx(max(sims.values()), abs=1e-6)


def test_layernorm_matching_ignores_a_per_token_offset_and_scale():
    """LayerNorm'd matching: adding a constant to all channels of a token or scaling it changes no decision."""
    x = smooth_tokens(1, 9, 12, 8)
    g = torch.Generator().manual_seed(3)
    shifted = x * (1 + torch.rand(1, 9, 12, 1, generator=g)) + 5 * torch.randn(1, 9, 12, 1, generator=g)
    kw = dict(r_h=0.3, r_w=0.3, match_features='layernorm', importance='redundancy', eject_mode='max')
    a, b = TokenAdapter(**kw)(x), TokenAdapter(**kw)(shifted)
    for key in ('rows', 'cols', 'normal_target'):
        assert torch.equal(a.info[key], b.info[key])
    raw = TokenAdapter(**dict(kw, match_features='raw'))(shifted)
    assert not torch.equal(a.info['normal_target'], raw.info['normal_target'])


def test_soft_ejector_weights_and_limits():
    x = smooth_tokens(2, 12, 13, 8)
    const = torch.ones(2, 1, 1) * torch.arange(3.0)
    for kw in (dict(eject_radius=1), dict(eject_radius=0), dict(eject_radius=None, eject_topk=5)):
        red = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='soft', **kw)(x)
        # weights sum to one: a constant comes back unchanged
        y = const.expand(2, red.tokens.shape[1], 3)
        torch.testing.assert_close(red.restore(y), const[:, None].expand(2, 12, 13, 3))
    # one candidate (the most similar reduced token anywhere) is the hard `max` ejector
    hard = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='max')(x)
    cold = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='soft', eject_radius=None, eject_topk=1)(x)
    y = torch.randn(hard.tokens.shape)
    torch.testing.assert_close(cold.restore(y), hard.restore(y))
    # radius 0: a kept position restores from its own reduced token only
    red = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='soft', eject_radius=0)(x)
    out = red.restore(y)
    rows, cols = red.info['rows'], red.info['cols']
    for b in range(2):
        kept = out[b][rows[b]][:, cols[b]].reshape(-1, y.shape[-1])
        torch.testing.assert_close(kept, y[b])


def test_dense_restore_equals_the_gathered_weighted_sum(monkeypatch):
    """restore_by_weights with n_reduced (one dense (N x N_r) matmul, what the soft local ejector uses) == the
    gather of k rows per token, repeated indices with zero weight included (window edges, padding)."""
    g = torch.Generator().manual_seed(0)
    B, H, W, k, Nr, D = 2, 5, 7, 6, 9, 4
    idx = torch.randint(0, Nr, (B, H * W, k), generator=g)
    idx[:, :, -1] = idx[:, :, 0]                                   # a repeated candidate ...
    weight = torch.rand(B, H * W, k, generator=g)
    weight[:, :, -1] = 0                                           # ... with zero weight
    weight = weight / weight.sum(-1, keepdim=True)
    y = torch.randn(B, Nr, D, generator=g)
    torch.testing.assert_close(restore_by_weights(idx, weight, H, W, Nr)(y), restore_by_weights(idx, weight, H, W)(y))
    # the soft local ejector (dense here: N_r <= 128 k) == its gathered form, with and without padding
    import mmtokred.reducers.expediting as expediting
    x = smooth_tokens(2, 12, 13, 8)
    valid = torch.ones(2, 12, 13, dtype=torch.bool)
    valid[1, :, -3:] = False
    for v in (None, valid):
        reducer = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='soft', eject_radius=1)
        y = torch.randn(reducer(x, valid=v).tokens.shape, generator=g)
        dense = reducer(x, valid=v).restore(y)
        with monkeypatch.context() as m:
            m.setattr(expediting, 'DENSE_RESTORE_RATIO', 0)            # never dense: the gather of k rows
            gathered = reducer(x, valid=v).restore(y)
        torch.testing.assert_close(dense, gathered)


@pytest.mark.parametrize('kw, match', [
    (dict(threshold_mode='ratio'), r"threshold_mode must be one of \['absolute', 'relative'\]"),
    (dict(match_features='norm1'), r"match_features must be one of \['raw', 'layernorm'\]"),
    (dict(injector='window'), r"injector must be one of \['global', 'local'\]"),
    (dict(eject_mode='soft', eject_temperature=0), r'eject_temperature must be a number > 0, got 0'),
    (dict(eject_radius=-1), r'eject_radius must be an integer >= 0, got -1'),
    (dict(eject_topk=0), r'eject_topk must be an integer >= 1, got 0'),
    (dict(separate_drops='yes'), r"separate_drops must be one of \[False, True\]"),
    (dict(preset='fast'), r"preset must be one of \['paper'\]"),
    (dict(injector='local', metric='euclidean'), r"injector='local' matches by cosine"),
])
def test_bad_options_name_themselves(kw, match):
    with pytest.raises(ValueError, match=match):
        TokenAdapter(**kw)


# ---------------------------------------------------------------------------------------------- Swin host
def _swin_tests():
    spec = importlib.util.spec_from_file_location('swin_tests', osp.join(osp.dirname(__file__), 'test_swin.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWIN_REDUCERS = [dict(type='TokenAdapter', grid=4, **kw) for kw in OPTIONS[1:]] + [
    dict(type='Expediting', cluster_grid=4, locality=3, iterations=2, temperature=2.0, temperature_mode='relative',
         topk=4)]


@pytest.mark.parametrize('reducer', SWIN_REDUCERS, ids=OPTION_IDS[1:] + ['expediting-relative'])
def test_per_window_on_the_swin_host(reducer):
    """Every 6x6 window reduced to 4x4 with the option, batched and non-divisible: finite, each sample on its own,
    k == K is exactly upstream."""
    swin = _swin_tests()
    upstream, reduced = swin.pair('mmseg', reducer=reducer, reduce_after_layer=[0, 5])
    x = torch.randn(2, 3, 70, 90)
    outs, ref = swin.run(reduced, x), swin.run(upstream, x)
    assert [o.shape for o in outs] == [o.shape for o in ref]
    assert all(torch.isfinite(o).all() for o in outs)
    assert not torch.equal(outs[2], ref[2])
    alone = swin.run(reduced, x[1:])
    assert all(torch.allclose(o[1:], a, atol=1e-5) for o, a in zip(outs, alone))
    same = dict(reducer, grid=6) if reducer['type'] == 'TokenAdapter' else dict(reducer, cluster_grid=6)
    upstream, unreduced = swin.pair('mmseg', reducer=same, reduce_after_layer=3)
    assert all(torch.equal(a, b) for a, b in zip(swin.run(upstream, x), swin.run(unreduced, x)))


# ---------------------------------------------------------------------------------------------- token_groups tool
def test_token_groups_tool_on_the_tiny_model(tmp_path):
    """The statistics tool runs end to end; the local injector keeps every merge within its neighbourhood."""
    config = osp.join(helpers.ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')
    data, ckpt, _ = helpers.tiny_ade_and_checkpoint(tmp_path, num=2, config=config)
    tool = helpers.load_tool('analysis_tools/token_groups.py')
    common = ['--cfg-options', f'test_dataloader.dataset.data_root={data}', 'model.backbone.reducer.eject_mode=max']
    stats = tool.main([config, ckpt, '--out', str(tmp_path / 'g.json')] + common)
    H, W = stats['grid']
    assert stats['images'] == 2 and len(stats['rows']['drop_frequency']) == H
    assert 0 <= stats['rows']['jaccard'] <= 1 and stats['group_size_max'] >= 1
    local = tool.main([config, ckpt] + common + [f'model.backbone.reducer.{option}' for option in (
        'injector=local', 'unique_ratio_h=0', 'unique_ratio_w=0', 'separate_drops=True')])
    assert local['inject_distance_mean'] <= 1.0 + 1e-6 and local['group_size_max'] <= 9
    assert osp.exists(tmp_path / 'g.json')
