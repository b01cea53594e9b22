"""Token Compensator: chunk arithmetic, branch vs fold, state dicts, upstream equality, bad input, training."""
import importlib.util
import os.path as osp

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

from mmtokred.compensators import (  # noqa: E402
    CompensatorBranch,
    TokenCompensator,
    apply_compensator,
    build_compensator_for,
    fold_compensator,
    unfold_compensator,
)

TA = dict(type='TokenAdapter', r_h=0.25, r_w=0.25)
DEGREES = [None,
           dict(reducer=dict(TA, r_h=0.2, r_w=0.2), reduce_after_layer=1),
           dict(reducer=TA, reduce_after_layer=1),
           dict(reducer=dict(TA, r_h=0.4, r_w=0.4), reduce_after_layer=1)]


def randomized(comp, seed=0):
    """A compensator whose up projections are non-zero (a fresh one is all zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        comp.up.copy_(torch.randn(comp.up.shape, generator=g, dtype=comp.up.dtype))
        comp.down.copy_(torch.randn(comp.down.shape, generator=g, dtype=comp.down.dtype))
    return comp


def tiny_vit(**kw):
    from mmseg.registry import MODELS

    import mmtokred  # noqa: F401
    cfg = dict(type='VisionTransformer', img_size=(32, 48), patch_size=8, embed_dims=24, num_layers=3, num_heads=2,
               mlp_ratio=2, out_indices=(2,), final_norm=True, with_cls_token=True)
    cfg.update(kw)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.eval()
    return model


def tiny_timm(**kw):
    pytest.importorskip('timm')
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    cfg = dict(img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2, mlp_ratio=2, num_classes=5)
    cfg.update(kw)
    return VisionTransformer(**cfg).eval()


# ------------------------------------------------------------------------------------------------------------------
# arithmetic
# ------------------------------------------------------------------------------------------------------------------
def test_chunk_arithmetic_identities():
    comp = randomized(TokenCompensator(16, 2, DEGREES, rank=3, scale=0.1).double())
    n = comp.num_steps + 1
    for s in range(n):
        assert torch.count_nonzero(comp.delta_weight(s, s)) == 0
        for t in range(n):
            # s -> t then t -> s is the identity: the two deltas cancel exactly
            assert torch.equal(comp.delta_weight(s, t), -comp.delta_weight(t, s))
            for u in range(n):   # s -> t -> u equals s -> u
                torch.testing.assert_close(comp.delta_weight(s, t) + comp.delta_weight(t, u), comp.delta_weight(s, u),
                                           rtol=0, atol=1e-12)
    # the signed sum of the chunks between the two degrees, times the scale
    chunks = [comp.up[..., k * 3:(k + 1) * 3] @ comp.down[..., k * 3:(k + 1) * 3, :] for k in range(comp.num_steps)]
    for s, t in ((0, 3), (3, 1), (1, 2)):
        signs = comp.step_signs(s, t)
        expected = 0.1 * sum(float(signs[k]) * chunks[k] for k in range(comp.num_steps))
        torch.testing.assert_close(comp.delta_weight(s, t), expected, rtol=0, atol=1e-12)
    # the token branch is the same linear map
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(comp.delta(x, 1, 1, 0, 2), x @ comp.delta_weight(0, 2)[1, 1].T, rtol=0, atol=1e-12)


def test_fresh_compensator_is_zero_and_file_roundtrip(tmp_path):
    comp = TokenCompensator(16, 2, DEGREES, rank=2, scale=0.05, host='mmseg.VisionTransformer')
    assert torch.count_nonzero(comp.delta_weight(0, 3)) == 0   # up starts at zero
    randomized(comp)
    path = str(tmp_path / 'c.pth')
    comp.save(path)
    back = TokenCompensator.load(path)
    assert back.metadata() == comp.metadata()
    assert back.degrees == comp.degrees and back.degrees[1]['reducer']['r_h'] == 0.2
    assert torch.equal(back.delta_weight(3, 1), comp.delta_weight(3, 1))
    torch.load(path, weights_only=True)   # plain tensors and metadata


# ------------------------------------------------------------------------------------------------------------------
# hosts: branch == fold, state dicts, upstream equality
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('host', ['mmseg', 'timm'])
def test_fold_equals_branch_and_unfold_restores(host):
    model = (tiny_vit() if host == 'mmseg' else tiny_timm()).double()
    x = torch.randn(2, 3, 32, 48 if host == 'mmseg' else 32, dtype=torch.float64)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    original = {k: v.clone() for k, v in model.state_dict().items()}
    comp = randomized(build_compensator_for(model, DEGREES, rank=2, scale=0.1).double())

    def run():
        with torch.no_grad():
            out = model(x)
        return out[-1] if isinstance(out, (tuple, list)) else out

    plain = run()
    branch = apply_compensator(model, comp, source=0, target=2)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys   # no new keys
    with_branch = run()
    assert not torch.allclose(with_branch, plain)                              # it does something
    branch.set_degrees(2, 1)
    branch.set_degrees(0, 2)
    assert torch.equal(run(), with_branch)
    branch.remove()
    assert torch.equal(run(), plain)                                           # removed: upstream again
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k])                                     # the branch never wrote weights

    fold_compensator(model, comp, 0, 2)
    # folding == branch: the same weights W + dW (bitwise); the outputs agree to float64 rounding (BLAS blocking
    # may differ between the two weight tensors' memory)
    torch.testing.assert_close(run(), with_branch, rtol=0, atol=1e-12)
    # arithmetic on the folded weights: 0 -> 2 then 2 -> 3 == 0 -> 3; then 3 -> 0 unfolds everything
    fold_compensator(model, comp, 2, 3)
    folded_03 = run()
    unfold_compensator(model, comp, 2, 3)
    unfold_compensator(model, comp, 0, 2)
    fold_compensator(model, comp, 0, 3)
    torch.testing.assert_close(run(), folded_03, rtol=0, atol=1e-10)
    fold_compensator(model, comp, 3, 0)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, original[k], rtol=0, atol=1e-12)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys


def test_degree_zero_without_compensation_is_upstream(tmp_path):
    """A compensated backbone at degree 0 (no reducer) and a branch with source == target are the upstream model."""
    upstream = tiny_vit()
    comp = randomized(build_compensator_for(upstream, DEGREES))
    path = str(tmp_path / 'c.pth')
    comp.save(path)
    compensated = tiny_vit(type='CompensatedVisionTransformer', compensator=dict(checkpoint=path, source=0))
    assert list(compensated.state_dict()) == list(upstream.state_dict())
    compensated.load_state_dict(upstream.state_dict(), strict=True)
    assert compensated.compensator_branch.target == 0
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        ref = upstream(x)[-1]
        assert torch.equal(compensated(x)[-1], ref)
        branch = CompensatorBranch(upstream, comp, 2, 2)
        assert torch.equal(upstream(x)[-1], ref)
        branch.remove()


def test_config_backbone_finds_the_target_degree(tmp_path):
    upstream = tiny_vit()
    comp = randomized(build_compensator_for(upstream, DEGREES))
    path = str(tmp_path / 'c.pth')
    comp.save(path)
    # the same setting written differently (defaults spelled out, a tuple) is found as degree 2
    model = tiny_vit(type='CompensatedVisionTransformer', compensator=dict(checkpoint=path),
                     reducer=dict(type='TokenAdapter', r_h=0.25, r_w=0.25, merge='average'), reduce_after_layer=1,
                     restore_after_layer=2)
    assert (model.compensator_branch.source, model.compensator_branch.target) == (0, 2)
    with pytest.raises(ValueError, match='not one of the degrees'):
        tiny_vit(type='CompensatedVisionTransformer', compensator=dict(checkpoint=path),
                 reducer=dict(type='TokenAdapter', r_h=0.3, r_w=0.3), reduce_after_layer=1)
    with pytest.raises(ValueError, match='target degree 1 is'):
        tiny_vit(type='CompensatedVisionTransformer', compensator=dict(checkpoint=path, target=1),
                 reducer=TA, reduce_after_layer=1)


# ------------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------------
def test_clear_errors_for_other_hosts_and_degrees():
    model = tiny_vit()
    with pytest.raises(ValueError, match=r'width 24 \(compensator: 32\)'):
        CompensatorBranch(model, TokenCompensator(32, 3, DEGREES, host='mmseg.VisionTransformer'))
    with pytest.raises(ValueError, match=r'depth 3 \(compensator: 12\)'):
        fold_compensator(model, TokenCompensator(24, 12, DEGREES, host='mmseg.VisionTransformer'), 0, 1)
    with pytest.raises(ValueError, match=r"host 'mmseg.VisionTransformer' \(compensator: 'timm"):
        CompensatorBranch(model, TokenCompensator(24, 3, DEGREES, host='timm.VisionTransformer'))
    comp = build_compensator_for(model, DEGREES)
    with pytest.raises(ValueError, match=r'target must be a degree index in \[0, 3\]'):
        CompensatorBranch(model, comp, 0, 4)
    with pytest.raises(ValueError, match=r'source must be a degree index in \[0, 3\]'):
        comp.delta_weight(-1, 2)
    with pytest.raises(ValueError, match='at least two'):
        TokenCompensator(24, 3, [None])
    with pytest.raises(ValueError, match="mode must be one of"):
        apply_compensator(model, comp, mode='merge')
    with pytest.raises(TypeError, match='no compensator host adapter'):
        build_compensator_for(torch.nn.Linear(3, 3), DEGREES)


# ------------------------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------------------------
def _write_images(folder, n, shape, seed):
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.uniform(0, 255, size=(shape[0] // 8 + 1, shape[1] // 8 + 1, 3))
        img = np.kron(base, np.ones((8, 8, 1)))[:shape[0], :shape[1]]          # blocky, like objects
        img = img + rng.normal(0, 10, size=img.shape)
        Image.fromarray(img.clip(0, 255).astype('uint8')).save(folder / f'{i:03d}.png')
    return str(folder)


@pytest.fixture
def one_thread():
    """Tiny models train ~15x faster on one thread than on two contended ones (shared CI machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('kind', ['backbone', 'classifier'])
def test_training_lowers_held_out_divergence(tmp_path, kind, one_thread):
    """A few seeded steps on generated images lower the student-teacher divergence on *other* images: L1 on the
    features of a bare backbone, KL on the logits of a classifier (the segmentor's per-pixel KL is the same
    function over the class axis)."""
    from mmtokred.compensators.distill import SelfDistillation, list_images, load_images, train_compensator
    torch.manual_seed(0)
    if kind == 'backbone':
        model, shape = tiny_vit(), (32, 48)
        degrees = [None, dict(reducer=dict(type='Pooling', grid=(2, 3)), reduce_after_layer=0)]
    else:
        model, shape = tiny_timm(), (32, 32)
        degrees = [None, dict(reducer=dict(type='Pooling', grid=(2, 2)), reduce_after_layer=0)]
    comp = build_compensator_for(model, degrees, rank=4, scale=1.0)
    distill = SelfDistillation(model, comp)
    norm = dict(mean=[127.5] * 3, std=[127.5] * 3)
    train = list_images(_write_images(tmp_path / 'train' / 'some_class', 48, shape, 0))   # any folder layout
    held = load_images(list_images(_write_images(tmp_path / 'held', 4, shape, 1)), shape, **norm)
    keys = list(model.state_dict())
    before = distill.divergence(held)
    assert before == pytest.approx(distill.divergence(held, compensate=False))   # fresh: no effect
    losses = train_compensator(distill, train, shape, steps=40, batch_size=4, lr=2e-2,
                               work_dir=str(tmp_path / 'work'), progress=False, **norm)
    after = distill.divergence(held)
    assert after < 0.9 * before, (before, after, losses[:3], losses[-3:])
    assert distill.divergence(held, compensate=False) == pytest.approx(before)   # the model itself is unchanged
    assert list(model.state_dict()) == keys
    # resumable: the saved state continues where it stopped
    saved = TokenCompensator.load(str(tmp_path / 'work' / 'compensator.pth'))
    assert torch.equal(saved.up, comp.up.detach()) and saved.extra['steps'] == 40
    more = train_compensator(distill, train, shape, steps=42, batch_size=4, lr=2e-2, work_dir=str(tmp_path / 'work'),
                             resume=True, progress=False, **norm)
    assert len(more) == 2


def test_dense_variant_tome_mlp_trains_and_folds(tmp_path, one_thread):
    """ToCom's dense variant (its Tab. 11: ToMe merges before every MLP and unmerges after it) is a degree the
    compensator trains on and applies to: the reduction changes the output, trained chunks change the reduced
    output, and folding them equals the branch under that reduction."""
    from mmtokred.compensators.distill import SelfDistillation, list_images, load_images, train_compensator
    model, shape = tiny_vit(), (32, 48)
    degrees = [None, dict(reducer=dict(type='ToMe', ratio=0.5, mode='mlp'), reduce_after_layer=0)]
    comp = build_compensator_for(model, degrees, rank=4, scale=1.0)
    distill = SelfDistillation(model, comp)
    norm = dict(mean=[127.5] * 3, std=[127.5] * 3)
    x = load_images(list_images(_write_images(tmp_path / 'held', 2, shape, 1)), shape, **norm)
    with torch.no_grad():
        full, reduced = distill.outputs(x, 0)[0], distill.outputs(x, 1)[0]
    assert not torch.allclose(full, reduced)                                   # the mode reduces
    train = list_images(_write_images(tmp_path / 'train', 8, shape, 0))
    losses = train_compensator(distill, train, shape, steps=6, batch_size=2, lr=2e-2, progress=False, **norm)
    assert all(torch.isfinite(torch.tensor(losses))) and torch.count_nonzero(comp.up) > 0
    with torch.no_grad():
        compensated = distill.outputs(x, 1, source=0)[0]
        assert not torch.allclose(compensated, reduced)                        # the chunks act under mlp merging
        assert torch.equal(distill.outputs(x, 0, source=0)[0], full)           # degree 0 -> 0: no change
        fold_compensator(model, comp, 0, 1)
        folded = distill.outputs(x, 1)[0]                                      # branch off (1 -> 1), weights folded
    torch.testing.assert_close(folded, compensated, rtol=1e-4, atol=1e-5)


_EX = 'segmenter_vit-t_expedit-17x22_tocom_camvid.py'
_TOME = 'segmenter_vit-t_tome-0.35x2_tocom_camvid.py'


@pytest.mark.parametrize('method,cut_35,cut_50', [
    ('tokenadapter', ('segmenter_vit-t_tokenadapter-r0.2x0.13_tocom_camvid.py', {}),
     ('segmenter_vit-t_tokenadapter-r0.25_tocom_camvid.py', {})),
    ('expediting', (_EX, {}), (_EX, {'model.backbone.reducer.cluster_grid': (13, 17)})),
    ('tome', (_TOME, {}), (_TOME, {'model.backbone.reducer.ratio': 0.5})),
])
def test_committed_camvid_compensator_fits_its_model(method, cut_35, cut_50):
    """The compensators trained once on CamVid: checksum, plain tensors, and each attaches to the CamVid models
    of the configs that use it (width, depth, host and the method's degrees all match), at both cuts."""
    import hashlib
    path = osp.join(helpers.ROOT, 'checkpoints', f'camvid_segmenter_vit-t_tocom-{method}_fp16.pth')
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(osp.join(helpers.ROOT, 'checkpoints', 'SHA256SUMS')) as f:
        assert digest in f.read().split()
    comp = TokenCompensator.load(path)
    assert (comp.embed_dims, comp.num_layers, comp.num_steps, comp.host) == (192, 12, 2, 'mmseg.VisionTransformer')
    assert torch.count_nonzero(comp.delta_weight(0, 2)) > 0
    for (config, options), target in ((cut_35, 1), (cut_50, 2)):
        cfg = helpers.load_cfg(f'configs/camvid/{config}', **options)
        assert cfg.model.backbone.compensator.checkpoint == \
            f'checkpoints/camvid_segmenter_vit-t_tocom-{method}_fp16.pth'
        cfg.model.backbone.compensator.checkpoint = path
        branch = helpers.build_model(cfg).backbone.compensator_branch
        assert (branch.source, branch.target) == (0, target)
