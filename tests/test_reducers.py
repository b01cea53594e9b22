"""Algorithm-level tests of the reducers (pure PyTorch)."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmtokred.reducers import (
    MSTM,
    EViT,
    Expediting,
    Pooling,
    TokenAdapter,
    ToMe,
    bipartite_soft_matching,
    build_reducer,
)
from mmtokred.reducers.expediting import (
    _build_tile_tables,
    _tile_tables,
    initial_cell_labels,
    local_token_clustering,
    nearest_source_indices,
    reconstruction_weights,
)

ALL = [
    lambda: TokenAdapter(r_h=0.3, r_w=0.3),
    lambda: TokenAdapter(r_h=0.3, r_w=0.2, eject_mode='max', merge='keep'),
    lambda: Expediting(cluster_ratio=0.7, locality=5, iterations=3, topk=5, normalize='sum'),
    lambda: ToMe(ratio=0.4),
    lambda: ToMe(ratio=0.5, rounds=2),
    lambda: Pooling(mode='avg', ratio=0.6),
    lambda: Pooling(mode='bilinear', grid=(5, 4), restore_mode='nearest'),
    lambda: Expediting(cluster_ratio=0.6, locality=3, iterations=2, topk=3, normalize='hard'),
    lambda: TokenAdapter(r_h=0.25, r_w=0.25, selection='alternating'),
]


spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
smooth_tokens = helpers.smooth_tokens


def test_token_adapter_40x40_runs_on_28x28():
    red = TokenAdapter(r_h=0.3, r_w=0.3)(smooth_tokens(2, 40, 40, 32))
    assert red.grid == (28, 28)
    assert red.tokens.shape == (2, 784, 32)
    # the paper's count: n_r = HW (r_h + r_w - r_h r_w)
    assert 1600 - 784 == round(1600 * (0.3 + 0.3 - 0.09))


@pytest.mark.parametrize('make', ALL)
@pytest.mark.parametrize('shape', [(2, 13, 17, 24), (3, 20, 9, 8)])
def test_batch_equals_per_sample_and_shapes(make, shape):
    """Batch > 1 gives the same result as one sample at a time; non-square, non-divisible grids work."""
    reducer = make()
    x = smooth_tokens(*shape)
    red = reducer(x)
    y = red.tokens * 2 + 1     # stands in for refined tokens
    out = red.restore(y)
    B, H, W, C = shape
    assert out.shape == (B, H, W, C)
    for b in range(B):
        single = reducer(x[b:b + 1])
        torch.testing.assert_close(single.tokens, red.tokens[b:b + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(single.restore(single.tokens * 2 + 1), out[b:b + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('reducer', [TokenAdapter(r_h=0.0, r_w=0.0), Expediting(cluster_ratio=1.0),
                                     ToMe(ratio=0.0), Pooling(ratio=1.0)])
def test_ratio_zero_is_exact_noop(reducer):
    x = smooth_tokens(2, 7, 9, 5)
    assert not reducer.enabled
    red = reducer(x)
    assert torch.equal(red.tokens, x.reshape(2, 63, 5))
    assert torch.equal(red.restore(red.tokens), x)


@pytest.mark.parametrize('make', ALL)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_finite(make, dtype):
    # large activations: squared distances overflow fp16 unless the arithmetic runs in fp32
    x = (smooth_tokens(2, 16, 12, 64) * 60).to(dtype)
    red = make()(x)
    assert red.tokens.dtype == dtype
    out = red.restore(red.tokens)
    assert out.dtype == dtype
    assert torch.isfinite(red.tokens.float()).all() and torch.isfinite(out.float()).all()


def test_token_adapter_groups_and_average_merge_match_brute_force():
    torch.manual_seed(0)
    x = smooth_tokens(1, 10, 12, 6)
    reducer = TokenAdapter(r_h=0.3, r_w=0.25, unique_ratio_h=0.2, unique_ratio_w=0.2, eject_mode='max')
    red = reducer(x)
    info = red.info
    rows, cols = info['rows'][0].tolist(), info['cols'][0].tolist()
    # rows/cols removed are the lowest-scoring ones
    score = x[0].amax(-1)
    assert sorted(rows) == sorted(score.amax(1).topk(len(rows)).indices.tolist())
    assert sorted(cols) == sorted(score.amax(0).topk(len(cols)).indices.tolist())
    row_u = dict(zip(rows, info['row_unique'][0].tolist()))
    col_u = dict(zip(cols, info['col_unique'][0].tolist()))
    reps = [(i, j) for i in rows for j in cols if not (row_u[i] or col_u[j])]
    normals = [(i, j) for i in range(10) for j in range(12) if i not in rows or j not in cols]
    groups = {p: [x[0, p[0], p[1]]] for p in reps}
    for (i, j) in normals:
        sims = torch.stack([F.cosine_similarity(x[0, i, j], x[0, p[0], p[1]], dim=0) for p in reps])
        groups[reps[int(sims.argmax())]].append(x[0, i, j])
    expected = torch.stack([torch.stack(groups[(i, j)]).mean(0) if (i, j) in groups else x[0, i, j]
                            for i in rows for j in cols])
    torch.testing.assert_close(red.tokens[0], expected, rtol=1e-5, atol=1e-5)
    # ejector 'max': every original token takes the refined value of its most cosine-similar merged token
    y = torch.randn(1, len(expected), 3)
    out = red.restore(y)[0]
    sim = F.normalize(x[0].reshape(-1, 6), dim=-1) @ F.normalize(expected, dim=-1).t()
    torch.testing.assert_close(out.reshape(-1, 3), y[0][sim.argmax(1)])


def test_token_adapter_m_threshold_averages_close_tokens():
    x = smooth_tokens(1, 8, 8, 4)
    red = TokenAdapter(r_h=0.25, r_w=0.25, eject_mode='m-threshold', threshold=2.0)(x)
    y = torch.randn(1, red.tokens.shape[1], 3)
    # threshold 2 (the largest cosine distance): every reduced token counts -> the plain mean everywhere
    torch.testing.assert_close(red.restore(y)[0], y[0].mean(0).expand(8, 8, 3))


def dense_masked_clustering(x, h, w, locality, iterations, t):
    """The reference's formulation: full N x hw distances, masked to the lambda x lambda window of each token's
    initial cell."""
    B, H, W, C = x.shape
    rl, cl = initial_cell_labels(H, W, h, w)
    tok_r, tok_c = rl[:, None].expand(H, W).flatten(), cl[None, :].expand(H, W).flatten()
    cen_r = torch.arange(h)[:, None].expand(h, w).flatten()
    cen_c = torch.arange(w)[None, :].expand(h, w).flatten()
    r = locality // 2
    mask = ((tok_r[:, None] - cen_r[None]).abs() <= r) & ((tok_c[:, None] - cen_c[None]).abs() <= r)
    tokens = x.reshape(B, H * W, C)
    centres = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (h, w)).flatten(2).transpose(1, 2)
    for _ in range(iterations):
        d = torch.cdist(tokens, centres).square()
        logits = (-t * d).masked_fill(~mask, float('-inf'))
        a = logits.softmax(-1)                                     # (B, N, hw)
        centres = (a.transpose(1, 2) @ tokens) / a.sum(1)[..., None].clamp_min(1e-16)
    return centres.reshape(B, h, w, C)


@pytest.mark.parametrize('tile', [1, 2, 4, 7])
@pytest.mark.parametrize('H,W,h,w,lam', [(40, 40, 28, 28, 5), (23, 31, 10, 13, 3), (12, 9, 5, 4, 7),
                                         (12, 12, 8, 8, 11), (12, 12, 9, 9, 5)])   # Swin windows: one tile
def test_local_clustering_equals_dense_masked_reference(H, W, h, w, lam, tile):
    x = torch.randn(2, H, W, 16, dtype=torch.float64)
    local = local_token_clustering(x, h, w, lam, 4, 0.5, tile)[0]
    dense = dense_masked_clustering(x, h, w, lam, 4, 0.5)
    torch.testing.assert_close(local, dense, rtol=1e-9, atol=1e-9)


def test_nearest_source_indices_equal_interpolate():
    """The integer emulation of nearest interpolation (the initial cell labels) gives F.interpolate's indices,
    float32 rounding included, for every pair 1 <= cells <= tokens <= 200 (the reducer's range: h <= H)."""
    for n_in in range(1, 201):
        cells = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in)
        for n_out in range(n_in, 201):
            expected = F.interpolate(cells, size=n_out, mode='nearest').view(n_out).long().tolist()
            assert list(nearest_source_indices(n_in, n_out)) == expected, (n_in, n_out)


@pytest.mark.parametrize('H,W,h,w,lam,tile', [(40, 40, 28, 28, 5, 4), (23, 31, 10, 13, 3, 2),
                                              (12, 12, 8, 8, 11, 12), (37, 29, 5, 3, 1, 1)])
def test_tile_tables_compile_without_graph_break(H, W, h, w, lam, tile):
    """Under torch.compile the clustering's index tables are built in the graph (fullgraph: no break) and equal the
    eager, cached ones."""
    torch._dynamo.reset()
    traced = torch.compile(_tile_tables, fullgraph=True, backend='eager', dynamic=False)(
        H, W, h, w, lam, tile, torch.device('cpu'))
    torch._dynamo.reset()
    for t, e, u in zip(traced, _tile_tables(H, W, h, w, lam, tile, torch.device('cpu')),
                       _build_tile_tables(H, W, h, w, lam, tile, torch.device('cpu'))):
        assert t.dtype == e.dtype and torch.equal(t, e) and torch.equal(u, e)


def test_reconstruction_weights_normalisation_and_no_underflow():
    x = torch.randn(1, 30, 8) * 100            # huge distances: exp(-t d) underflows in the reference
    c = torch.randn(1, 9, 8)
    for norm, check in (('l2', lambda w: w.norm(dim=-1)), ('sum', lambda w: w.sum(-1))):
        idx, w = reconstruction_weights(x, c, 4, 0.02, norm)
        assert torch.isfinite(w).all()
        torch.testing.assert_close(check(w), torch.ones(1, 30))
        d = torch.cdist(x, c).square()
        assert torch.equal(idx[..., 0], d.argmin(-1))


def test_expediting_sum_normalised_restores_constants():
    red = Expediting(cluster_grid=(5, 6), locality=3, iterations=2, topk=6,
                     normalize='sum')(smooth_tokens(2, 11, 14, 4))
    out = red.restore(torch.full((2, 30, 3), 7.0))
    torch.testing.assert_close(out, torch.full((2, 11, 14, 3), 7.0))


def test_tome_unmerge_restores_length_and_order():
    x = torch.randn(2, 50, 8)
    merge, unmerge = bipartite_soft_matching(x, 20)
    merged, size = merge(x)
    assert merged.shape == (2, 30, 8) and size.sum(1).flatten().tolist() == [50.0, 50.0]
    restored = unmerge(merged)
    assert restored.shape == x.shape
    # merge one-hot position codes: every restored position must carry its own code (it is in its own group)
    onehot = torch.eye(50).expand(2, 50, 50)
    groups = unmerge(merge(onehot)[0])                  # (B, 50, 50): row p = mean code of p's group
    own = groups.diagonal(dim1=1, dim2=2)
    assert (own > 0).all()
    torch.testing.assert_close(groups.sum(-1), torch.ones(2, 50))
    untouched = own == 1
    assert untouched.sum(1).tolist() == (size == 1).sum((1, 2)).tolist()
    assert torch.equal((restored == x).all(-1), untouched)


def gather_scatter_soft_matching(metric, r, class_token=False):
    """ToMe's bipartite soft matching written as its paper's code does (size-weighted sums by gathers and
    scatter_add over the A / B halves, unmerge by scatters into the A half): the oracle of the row-index form."""
    B, N, _ = metric.shape
    r = min(r, (N - int(class_token)) // 2)
    m = F.normalize(metric.float(), dim=-1)
    scores = m[:, ::2] @ m[:, 1::2].transpose(1, 2)
    if class_token:
        scores[:, 0] = float('-inf')
    node_max, node_idx = scores.max(-1)
    edge_idx = node_max.argsort(-1, descending=True)
    unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
    if class_token:
        unm_idx = unm_idx.sort(-1).values
    dst_idx = node_idx.gather(1, src_idx)
    n_a = m[:, ::2].shape[1]

    def rows(idx, D):
        return idx[..., None].expand(-1, -1, D)

    def merge(x, size=None):
        D = x.shape[-1]
        size = x.new_ones(B, N, 1, dtype=torch.float32) if size is None else size
        xs = x.float() * size
        src, dst, s_src, s_dst = xs[:, ::2], xs[:, 1::2], size[:, ::2], size[:, 1::2]
        unm = src.gather(1, rows(unm_idx, D))
        dst = dst.scatter_add(1, rows(dst_idx, D), src.gather(1, rows(src_idx, D)))
        s_dst = s_dst.scatter_add(1, dst_idx[..., None], s_src.gather(1, src_idx[..., None]))
        out_size = torch.cat([s_src.gather(1, unm_idx[..., None]), s_dst], 1)
        return (torch.cat([unm, dst], 1) / out_size).to(x.dtype), out_size

    def unmerge(y):
        D, n_unm = y.shape[-1], n_a - r
        out = y.new_empty(B, N, D)
        out[:, 1::2] = y[:, n_unm:]
        a_part = y.new_empty(B, n_a, D)
        a_part.scatter_(1, rows(unm_idx, D), y[:, :n_unm])
        a_part.scatter_(1, rows(src_idx, D), y[:, n_unm:].gather(1, rows(dst_idx, D)))
        out[:, ::2] = a_part
        return out
    return merge, unmerge


@pytest.mark.parametrize('class_token', [False, True])
@pytest.mark.parametrize('N,r', [(51, 25), (51, 10), (64, 32), (9, 3)])
def test_tome_row_index_merge_equals_gather_scatter_form(N, r, class_token):
    """merge (unweighted and size-weighted) and unmerge are exactly (fp32) the gather / scatter_add form, batch 2,
    odd and even N, all A tokens merged or some kept, cls protected, tied similarities; bf16 inputs stay finite."""
    gen = torch.Generator().manual_seed(N + r)
    metric = torch.randn(2, N, 6, generator=gen)
    metric[:, N // 2:N // 2 + 4] = metric[:, :1]                         # ties in the scores
    x, size = torch.randn(2, N, 5, generator=gen), torch.randint(1, 4, (2, N, 1), generator=gen).float()
    merge, unmerge = bipartite_soft_matching(metric, r, class_token=class_token)
    ref_merge, ref_unmerge = gather_scatter_soft_matching(metric, r, class_token=class_token)
    for s in (None, size):
        (out, out_size), (ref, ref_size) = merge(x, s), ref_merge(x, s)
        assert torch.equal(out, ref) and torch.equal(out_size, ref_size)
    y = torch.randn(2, out.shape[1], 5, generator=gen)
    assert torch.equal(unmerge(y), ref_unmerge(y))
    low, _ = merge(x.bfloat16())
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all() and torch.isfinite(unmerge(low)).all()


def test_tome_reducer_restores_grid():
    x = smooth_tokens(2, 9, 11, 6)
    red = ToMe(ratio=0.5, rounds=3)(x)
    assert red.tokens.shape[1] == 99 - 49 - 25 - 12
    assert red.restore(red.tokens).shape == x.shape


@pytest.mark.parametrize('cfg,match', [
    (dict(type='TokenAdapter', r_h=1.0), 'r_h'),
    (dict(type='TokenAdapter', r_w=-0.1), 'r_w'),
    (dict(type='TokenAdapter', unique_ratio_h=1.2), 'unique_ratio_h'),
    (dict(type='TokenAdapter', eject_mode='min'), 'eject_mode'),
    (dict(type='Expediting', cluster_grid=28, locality=4), 'locality'),
    (dict(type='Expediting', cluster_grid=4, topk=17), 'topk'),
    (dict(type='Expediting', cluster_grid=4, temperature=0), 'temperature'),
    (dict(type='Expediting'), 'cluster_grid'),
    (dict(type='ToMe', ratio=0.6), 'ratio'),
    (dict(type='Nope'), 'unknown reducer'),
])
def test_bad_parameters_name_themselves(cfg, match):
    with pytest.raises((ValueError, KeyError), match=match):
        build_reducer(cfg)


def test_grid_too_small_errors():
    with pytest.raises(ValueError, match='too small'):
        TokenAdapter(r_h=0.6, r_w=0.3)(torch.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match='does not fit'):
        Expediting(cluster_grid=(28, 28))(torch.randn(1, 20, 40, 4))
    with pytest.raises(ValueError, match='topk'):
        Expediting(cluster_ratio=0.5, topk=20)(torch.randn(1, 6, 6, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('make', ALL)
def test_cuda_matches_cpu(make):
    x = smooth_tokens(2, 14, 10, 16)
    red_cpu, red_gpu = make()(x), make()(x.cuda())
    torch.testing.assert_close(red_gpu.tokens.cpu(), red_cpu.tokens, rtol=1e-4, atol=1e-4)


ATTENTION = [lambda: EViT(keep_rate=0.6), lambda: EViT(keep_rate=0.7, fuse=False), lambda: MSTM(keep_rate=0.5),
             lambda: TokenAdapter(r_h=0.3, r_w=0.3, importance='attention')]


@pytest.mark.parametrize('make', ATTENTION)
def test_attention_reducers_batch_and_restore(make):
    x = smooth_tokens(3, 9, 7, 8)
    attn = torch.rand(3, 63)
    reducer = make()
    red = reducer(x, attn)
    out = red.restore(red.tokens)
    assert out.shape == x.shape and torch.isfinite(out).all()
    for b in range(3):
        one = reducer(x[b:b + 1], attn[b:b + 1])
        torch.testing.assert_close(one.tokens, red.tokens[b:b + 1])
    with pytest.raises(ValueError, match='importance the host supplies'):
        reducer(x)


@pytest.mark.parametrize('make', ATTENTION[:3])
def test_pruning_restore_fills_every_position(make):
    x = smooth_tokens(2, 6, 10, 4)
    attn = torch.rand(2, 60)
    red = make()(x, attn)
    kept = red.info['kept']
    n_keep = kept.shape[1]
    ids = torch.arange(red.tokens.shape[1], dtype=torch.float32).expand(2, -1)[..., None]
    back = red.restore(ids)[..., 0].flatten(1)
    assert ((back >= 0) & (back < n_keep)).all()               # every position filled from a kept token
    assert torch.equal(back.gather(1, kept).long(), torch.arange(n_keep).expand(2, -1))   # kept ones: themselves
    # kept = the top cls-attention tokens
    assert torch.equal(kept.sort(1).values, attn.topk(n_keep, 1).indices.sort(1).values)


def test_evit_fused_token_is_attention_weighted_mean():
    x = smooth_tokens(1, 4, 5, 3)
    attn = torch.rand(1, 20)
    red = EViT(keep_rate=0.5, fuse=True)(x, attn)
    pruned = attn.topk(20, 1).indices[:, 10:]
    w = attn[0, pruned[0]] / attn[0, pruned[0]].sum()
    expected = (w[:, None] * x.reshape(20, 3)[pruned[0]]).sum(0)
    torch.testing.assert_close(red.tokens[0, -1], expected)
    assert red.tokens.shape[1] == 11


def test_mstm_merge_is_importance_weighted():
    x = smooth_tokens(1, 3, 4, 5)
    attn = torch.rand(1, 12) + 0.1
    red = MSTM(keep_rate=0.25)(x, attn)
    assign = red.info['assign'][0]
    xs, w = x.reshape(12, 5), attn[0]
    for j in range(3):
        members = (assign == j).nonzero()[:, 0]
        expected = (w[members, None] * xs[members]).sum(0) / w[members].sum()
        torch.testing.assert_close(red.tokens[0, j], expected)


def test_keep_rate_one_is_noop():
    x = smooth_tokens(2, 5, 5, 4)
    for reducer in (EViT(keep_rate=1.0), MSTM(keep_rate=1.0)):
        assert not reducer.enabled
        red = reducer(x, torch.rand(2, 25))
        assert torch.equal(red.restore(red.tokens), x)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='EViT', keep_rate=0.0), 'keep_rate'),
    (dict(type='EViT', keep_rate=1.5), 'keep_rate'),
    (dict(type='MSTM', keep_rate=-1), 'keep_rate'),
    (dict(type='Pooling', mode='median', ratio=0.5), 'mode'),
    (dict(type='Pooling', ratio=0.5, grid=3), 'exactly one'),
    (dict(type='TokenAdapter', importance='entropy'), 'importance'),
    (dict(type='Expediting', cluster_grid=4, normalize='softmax'), 'normalize'),
    (dict(type='Expediting', cluster_grid=4, tile=0), 'tile'),
    (dict(type='TokenAdapter', eject_mode='assignment', merge='keep'), 'merge'),
])
def test_more_bad_parameters(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_reducer(cfg)


def test_token_adapter_random_and_alternating_selection():
    x = smooth_tokens(1, 10, 10, 4)
    alt = TokenAdapter(r_h=0.3, r_w=0.3, selection='alternating')(x)
    assert alt.info['rows'][0].tolist() == torch.linspace(0, 9, 7).round().long().tolist()
    r1 = TokenAdapter(r_h=0.3, r_w=0.3, selection='random', seed=1)(x)
    r2 = TokenAdapter(r_h=0.3, r_w=0.3, selection='random', seed=1)(x)
    assert torch.equal(r1.info['rows'], r2.info['rows'])


def test_token_adapter_assignment_ejector_is_the_merge_membership():
    x = smooth_tokens(2, 9, 8, 5)
    red = TokenAdapter(r_h=0.3, r_w=0.3, eject_mode='assignment')(x)
    ids = torch.arange(red.tokens.shape[1], dtype=torch.float32).expand(2, -1)[..., None]
    back = red.restore(ids)[..., 0].flatten(1).long()
    info = red.info
    kept_flat = (info['rows'][:, :, None] * 8 + info['cols'][:, None, :]).flatten(1)
    assert torch.equal(back.gather(1, kept_flat), torch.arange(kept_flat.shape[1]).expand(2, -1))
    assert torch.equal(back.gather(1, info['normal_flat']), info['normal_target'])


# ------------------------------------------------------------------------------------------------------------
# the reducer interface: declared capabilities, plan, reduce-like, valid masks
# ------------------------------------------------------------------------------------------------------------
GRID_REDUCERS = [lambda: TokenAdapter(r_h=0.3, r_w=0.25), lambda: TokenAdapter(grid=(5, 4), eject_mode='max'),
                 lambda: TokenAdapter(grid=4, merge='avg_pool'), lambda: TokenAdapter(grid=4, merge='keep'),
                 lambda: Expediting(cluster_grid=(4, 3), topk=4, locality=3),
                 lambda: Expediting(cluster_ratio=0.5, topk=3, normalize='hard'),
                 lambda: Pooling(grid=(4, 3)), lambda: Pooling(ratio=0.5, mode='max'),
                 lambda: Pooling(grid=3, mode='bilinear')]
SET_REDUCERS = [lambda: ToMe(ratio=0.4, rounds=2), lambda: EViT(keep_rate=0.6), lambda: MSTM(keep_rate=0.5)]


@pytest.mark.parametrize('make', GRID_REDUCERS + SET_REDUCERS)
def test_reduce_like_reproduces_the_tokens(make):
    """Reduction.reduce applies the reduction to another tensor: on the input itself it gives the tokens, and it
    is linear per channel (so any (B, H, W, D) can be carried along)."""
    reducer = make()
    x = smooth_tokens(2, 9, 7, 8)
    red = reducer(x, torch.rand(2, 63)) if reducer.needs_importance else reducer(x)
    torch.testing.assert_close(red.reduce(x), red.tokens)
    extra = torch.randn(2, 9, 7, 3)
    both = red.reduce(torch.cat([x, extra], -1))
    torch.testing.assert_close(both[..., 8:], red.reduce(extra))
    assert red.assignment().shape == (2, 9, 7)


@pytest.mark.parametrize('make', GRID_REDUCERS)
def test_grid_reducers_plan_their_grid(make):
    reducer = make()
    assert reducer.returns_grid
    red = reducer(smooth_tokens(2, 9, 7, 8))
    assert red.grid == reducer.plan(9, 7) and red.tokens.shape[1] == red.grid[0] * red.grid[1]


@pytest.mark.parametrize('make', SET_REDUCERS)
def test_set_reducers_declare_it_and_refuse_a_valid_mask(make):
    reducer = make()
    assert not reducer.returns_grid
    with pytest.raises(NotImplementedError, match='token set'):
        reducer.plan(9, 7)
    valid = torch.ones(2, 9, 7, dtype=torch.bool)
    valid[:, -1] = False
    with pytest.raises(ValueError, match='does not take a valid mask'):
        reducer(smooth_tokens(2, 9, 7, 8), torch.rand(2, 63), valid)


def test_token_adapter_grid_or_ratios():
    with pytest.raises(ValueError, match='either r_h / r_w or grid'):
        TokenAdapter(r_h=0.3, grid=4)
    assert TokenAdapter(grid=(8, 8)).plan(12, 12) == (8, 8)
    assert TokenAdapter().plan(10, 10) == (7, 7)            # paper default r = 0.3
    with pytest.raises(ValueError, match='does not fit the 6x6'):
        TokenAdapter(grid=7).plan(6, 6)


@pytest.mark.parametrize('make', GRID_REDUCERS)
def test_padding_never_enters_a_grid_reduction(make):
    """Padded tokens (valid False) may hold anything: the real reduced tokens and the restored real positions do
    not change, and reduced tokens made of padding only are marked invalid."""
    reducer = make()
    x = smooth_tokens(2, 9, 7, 8)
    valid = torch.ones(2, 9, 7, dtype=torch.bool)
    valid[:, 7:] = False
    valid[:, :, 6:] = False
    a = reducer(x, valid=valid)
    b = reducer(torch.where(valid[..., None], x, 10 * torch.randn_like(x)), valid=valid)
    keep = torch.ones(a.tokens.shape[:2], dtype=torch.bool) if a.valid is None else a.valid
    assert keep.any(1).all()
    torch.testing.assert_close(a.tokens[keep], b.tokens[keep])
    y = torch.randn(a.tokens.shape)
    torch.testing.assert_close(a.restore(y)[valid], b.restore(y)[valid])


def test_expediting_dense_restore_equals_the_top_k_gather():
    """With k a large share of the clusters the restore is one dense matmul: the same weighted sum."""
    x = smooth_tokens(2, 12, 12, 16).double()
    dense = Expediting(cluster_grid=8, topk=60, locality=11)(x)
    y = torch.randn(2, 64, 5, dtype=torch.float64)
    idx, weight = reconstruction_weights(x.reshape(2, 144, 16), dense.tokens, 60, 0.02, 'l2')
    gathered = (weight[..., None] * y.gather(1, idx.reshape(2, -1, 1).expand(-1, -1, 5)).view(2, 144, 60, 5)).sum(2)
    torch.testing.assert_close(dense.restore(y), gathered.view(2, 12, 12, 5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('valid', [False, True])
def test_expediting_gradients_are_finite(valid):
    """A compensator is trained through the clustering: tiles' padding slots (23x30 -> 17x22 clusters uses several
    tiles) and padded tokens must give zero, not NaN, gradients."""
    x = torch.randn(2, 23, 30, 16, requires_grad=True)
    mask = None
    if valid:
        mask = torch.ones(2, 23, 30, dtype=torch.bool)
        mask[1, 18:] = False
    red = Expediting(cluster_grid=(17, 22), temperature=0.02, topk=20)(x, valid=mask)
    red.restore(red.tokens).sum().backward()
    assert torch.isfinite(x.grad).all()
