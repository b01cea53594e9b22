"""The MAC counter: one test per counted op, per reduction op, and a reduced-depth Segmenter against a
hand-derived formula (the same formula gives 671.07 G for ViT-L at 640, see BENCHMARKS.md)."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmtokred.analysis.flops import MacCounter, count_model_macs
from mmtokred.analysis.phases import BACKBONE_FULL, BACKBONE_REDUCED, HEAD, REDUCE, RESTORE
from mmtokred.reducers import Expediting, TokenAdapter, ToMe
from mmtokred.reducers.expediting import _tile_tables

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)


def count(fn):
    with torch.no_grad(), MacCounter() as c:
        fn()
    return c.total()


def test_linear_and_mm():
    lin = torch.nn.Linear(7, 5)
    assert count(lambda: lin(torch.randn(3, 4, 7))) == 3 * 4 * 7 * 5
    assert count(lambda: torch.randn(6, 7) @ torch.randn(7, 2)) == 6 * 7 * 2


def test_bmm_and_batched_matmul():
    assert count(lambda: torch.randn(2, 3, 4, 5) @ torch.randn(2, 3, 5, 6)) == 2 * 3 * 4 * 5 * 6
    assert count(lambda: torch.baddbmm(torch.randn(4, 3, 6), torch.randn(4, 3, 5),
                                       torch.randn(4, 5, 6))) == 4 * 3 * 5 * 6


def test_convolution():
    conv = torch.nn.Conv2d(3, 8, 4, stride=4, groups=1)
    assert count(lambda: conv(torch.randn(2, 3, 16, 12))) == 2 * 8 * 4 * 3 * (3 * 4 * 4)


def test_explicit_attention_module():
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(2, 10, 16)
    # in-proj 3 N C^2 + QK^T N^2 C + AV N^2 C + out-proj N C^2
    assert count(lambda: mha(x, x, x, need_weights=True)) == 2 * (4 * 10 * 16 * 16 + 2 * 10 * 10 * 16)


def test_sdpa_is_counted():
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)
    assert count(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * 4 * 10 * 12 * (8 + 6)


def test_cdist():
    assert count(lambda: torch.cdist(torch.randn(2, 40, 8), torch.randn(2, 30, 8))) == 2 * 40 * 30 * 8


def phase_macs(model_fn):
    with torch.no_grad(), MacCounter() as c:
        model_fn()
    return c


def test_token_adapter_op_costs():
    B, H, W, C, D = 1, 20, 20, 16, 5
    ta = TokenAdapter(r_h=0.3, r_w=0.3, unique_ratio_h=0.1, unique_ratio_w=0.1, eject_mode='m-threshold')
    x = torch.randn(B, H, W, C)
    red = ta(x)
    n_r = 14 * 14
    n_rep = (14 - 1) * (14 - 1)
    matching = (H * W - n_r) * n_rep * C       # normal x representative cosine similarities
    ejector = H * W * n_r * C                  # original x merged reduced tokens
    assert count(lambda: ta(x)) == B * (matching + ejector)
    assert count(lambda: red.restore(torch.randn(B, n_r, D))) == B * H * W * n_r * D   # (N x N_r) @ (N_r x D)


def test_expediting_op_costs():
    B, H, W, C, D = 2, 13, 11, 8, 3
    h, w, lam, kappa, k, tile = 6, 5, 3, 4, 5, 2
    ex = Expediting(cluster_grid=(h, w), locality=lam, iterations=kappa, topk=k, tile=tile)
    x = torch.randn(B, H, W, C)
    tok, cand, _ = _tile_tables(H, W, h, w, lam, tile, x.device)
    n_tiles, S = tok.shape                                    # tiles, tokens per tile (padded)
    assert cand.shape[1] == (tile + lam - 1) ** 2             # candidates per tile window
    clustering = kappa * 2 * n_tiles * S * (tile + lam - 1) ** 2 * C   # distances + weighted sums
    reconstruction = H * W * h * w * C                       # token-centre distances for the top-k weights
    assert count(lambda: ex(x)) == B * (clustering + reconstruction)
    red = ex(x)
    assert count(lambda: red.restore(torch.randn(B, h * w, D))) == B * H * W * k * D


def test_tome_op_costs():
    x = torch.randn(2, 8, 10, 6)
    n = 80
    assert count(lambda: ToMe(ratio=0.25)(x)) == 2 * (n // 2) * (n // 2) * 6    # A x B similarities


def segmenter_macs(N, C, depth, mlp, Cin_head, D, head_layers, head_mlp, K, patch_in):
    """Hand-derived MACs of Segmenter's tensor forward with N patch tokens (+1 cls in the backbone)."""
    n = N + 1
    layer = 4 * n * C * C + 2 * n * n * C + 2 * n * C * mlp * C
    L = N + K
    head_layer = 4 * L * D * D + 2 * L * L * D + 2 * L * D * head_mlp * D
    head = N * Cin_head * D + head_layers * head_layer + N * D * D + K * D * D + N * K * D
    return N * C * patch_in + depth * layer + head


def test_reduced_depth_segmenter_matches_formula():
    cfg = helpers.load_cfg('configs/tiny/segmenter_tiny_ade.py')
    cfg.model.backbone.num_layers = 2
    model = helpers.build_model(cfg)
    x = torch.zeros(1, 3, 96, 128)
    counter = count_model_macs(model, x, lambda m, t: m(t, mode='tensor'))
    expected = segmenter_macs(N=48, C=64, depth=2, mlp=2, Cin_head=64, D=64, head_layers=1, head_mlp=4, K=150,
                              patch_in=3 * 16 * 16)
    assert counter.total() == expected
    by = counter.by_phase()
    assert set(by) == {BACKBONE_FULL, HEAD}


def test_vitl_formula_gives_the_documented_total():
    """The formula the counter is tested against, evaluated at Segmenter ViT-L/16 640x640: 671.07 G (BENCHMARKS.md
    explains the 1.8% gap to the published 658.98: the decoder's attention matmuls)."""
    total = segmenter_macs(N=1600, C=1024, depth=24, mlp=4, Cin_head=1024, D=1024, head_layers=2, head_mlp=4,
                           K=150, patch_in=3 * 16 * 16)
    assert round(total / 1e9, 2) == 671.07
    L = 1600 + 150
    head_attention = 2 * (2 * L * L * 1024)
    assert abs((total - head_attention) / 1e9 - 658.98) / 658.98 < 0.001


@pytest.mark.parametrize('config', ['configs/tiny/segmenter_tiny_tokenadapter_ade.py',
                                    'configs/tiny/segmenter_tiny_expedit_ade.py',
                                    'configs/tiny/segmenter_tiny_tome_ade.py'])
def test_reduced_models_report_every_component(config):
    model = helpers.build_model(helpers.load_cfg(config))
    counter = count_model_macs(model, torch.zeros(1, 3, 96, 96), lambda m, t: m(t, mode='tensor'))
    by = counter.by_phase()
    assert by[REDUCE] > 0 and by[BACKBONE_REDUCED] > 0 and by[HEAD] > 0
    base = count_model_macs(helpers.build_model(helpers.load_cfg('configs/tiny/segmenter_tiny_ade.py')),
                            torch.zeros(1, 3, 96, 96), lambda m, t: m(t, mode='tensor')).total()
    assert counter.total() != base
    if 'tome' not in config:
        assert RESTORE in by


def test_a_failing_forward_leaves_no_phase_open():
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.phases import current_phase

    class FailingBackbone(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError('backbone failed')

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = FailingBackbone()

        def forward(self, x):
            return self.backbone(x)

    with pytest.raises(RuntimeError, match='backbone failed'):
        count_model_macs(Broken(), torch.randn(2, 4))
    assert current_phase() is None
