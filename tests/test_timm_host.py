"""timm ViT classification host: ToMe as its paper uses it, grid reducers, the classifier tool, FLOPs."""
import os.path as osp

import pytest
import torch

timm = pytest.importorskip('timm')

from mmtokred import insert_token_reduction  # noqa: E402
from mmtokred.compensators import build_classifier  # noqa: E402
from mmtokred.hosts.timm_vit import merge_block, remaining_tokens  # noqa: E402
from mmtokred.reducers import ToMe, bipartite_soft_matching  # noqa: E402


def configure_timm_reduction(model, reducer=None, reduce_after_layer=None):
    return insert_token_reduction(model, reducer, reduce_after_layer)


def tome_block(block, x, size, r, n_prefix, prop_attn=True):
    return merge_block(block, x, size, r, n_prefix, ToMe(mode='layer', r=r, prop_attn=prop_attn))

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tiny(depth=3, **kw):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    cfg = dict(img_size=32, patch_size=8, embed_dim=24, depth=depth, num_heads=2, mlp_ratio=2, num_classes=5)
    cfg.update(kw)
    return VisionTransformer(**cfg).eval()


def test_matching_protects_the_class_token():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 6)
    x[:, 1] = x[:, 0]            # the cls token's twin: without protection they would merge first
    merge, _ = bipartite_soft_matching(x, 4, class_token=True)
    out, size = merge(x)
    assert out.shape == (2, 5, 6)
    assert torch.equal(out[:, 0], x[:, 0]) and torch.all(size[:, 0] == 1)
    merge, _ = bipartite_soft_matching(x, 4)
    assert merge(x)[1][:, 0].max() == 1 and (merge(x)[1] > 1).any()   # unprotected: r clipped to 4 of 9 tokens


@pytest.mark.parametrize('reducer', [None, dict(type='ToMe', mode='layer', r=0),
                                     dict(type='ToMe', mode='layer', r=[0, 0, 0])])
def test_no_reduction_is_exactly_timm(reducer):
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(x)
        configure_timm_reduction(model, reducer)
        assert torch.equal(model(x), ref)
        configure_timm_reduction(model, dict(type='ToMe', mode='layer', r=3))
        assert not torch.allclose(model(x), ref)
        configure_timm_reduction(model, None)
        assert torch.equal(model(x), ref)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys


def test_tome_token_schedule_per_layer():
    model = tiny(depth=4)
    seen = []
    for block in model.blocks:
        block.mlp.register_forward_hook(lambda m, a, o: seen.append(o.shape[1]))
    configure_timm_reduction(model, dict(type='ToMe', mode='layer', r=[2, 3, 8, 0]))
    with torch.no_grad():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, 5)
    assert seen == remaining_tokens(17, [2, 3, 8, 0]) == [15, 12, 7, 7]   # r clipped to half of the mergeable
    with pytest.raises(ValueError, match='r lists 2 values; this host has 4 blocks'):
        configure_timm_reduction(model, dict(type='ToMe', mode='layer', r=[1, 2]))
        model(torch.randn(1, 3, 32, 32))


def test_size_tracking_and_proportional_attention_make_twins_exact():
    """Merging exact twin tokens with size tracking + proportional attention changes nothing downstream: the next
    block's cls output equals the unmerged model's (and the cls token itself is never merged)."""
    model = tiny(depth=2).double()
    torch.manual_seed(1)
    m = 6
    x = torch.randn(2, 1 + 2 * m, 24, dtype=torch.float64)
    for j in range(1, m + 1):
        x[:, 2 * j] = x[:, 2 * j - 1]      # A token 2j is the twin of B token 2j - 1
    b0, b1 = model.blocks
    with torch.no_grad():
        ref = b1(b0(x))[:, 0]
        merged, size = tome_block(b0, x, None, m, n_prefix=1)
        assert merged.shape[1] == 1 + m and sorted(size[0, :, 0].tolist()) == [1.0] + [2.0] * m
        out, _ = tome_block(b1, merged, size, 0, n_prefix=1)
        torch.testing.assert_close(out[:, 0], ref, rtol=0, atol=1e-10)
        no_prop, _ = tome_block(b1, merged, size, 0, n_prefix=1, prop_attn=False)
        assert not torch.allclose(no_prop[:, 0], ref)


def test_grid_reducers_on_the_patch_grid():
    model = tiny(img_size=(40, 48))            # 5x6 patch grid
    seen = []
    model.blocks[1].register_forward_hook(lambda m, a, o: seen.append(o.shape[1]))
    x = torch.randn(2, 3, 40, 48)
    configure_timm_reduction(model, dict(type='TokenAdapter', r_h=0.2, r_w=0.34), reduce_after_layer=0)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert seen == [1 + 4 * 4]
    configure_timm_reduction(model, dict(type='Expediting', cluster_grid=(3, 3), locality=3, topk=4),
                             reduce_after_layer=-1)
    with torch.no_grad():
        model(x)
    assert seen[-1] == 1 + 9
    with pytest.raises(ValueError, match=r'reduce_after_layer must be an integer in \[-1, 1\]'):
        configure_timm_reduction(model, dict(type='TokenAdapter'), reduce_after_layer=2)
    with pytest.raises(ValueError, match="use mode='layer'"):
        configure_timm_reduction(model, dict(type='ToMe', ratio=0.5))
    with pytest.raises(ValueError, match='cls attention'):
        configure_timm_reduction(model, dict(type='EViT'), reduce_after_layer=0)


def _tiny_cfg(tmp_path, **extra):
    from mmengine.config import Config
    cfg = Config(dict(model=dict(type='TimmVisionTransformer', name='vit_tiny_patch16_224', img_size=32, patch_size=8,
                                 depth=2, num_classes=3),
                      data=dict(resize=36, crop=32, mean=[127.5] * 3, std=[127.5] * 3), reduction=dict(), **extra))
    path = str(tmp_path / 'cls.py')
    cfg.dump(path)
    return path


def _folder(tmp_path, n_per_class=3):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ('ant', 'bee', 'cat'):
        (tmp_path / 'val' / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (40, 44, 3), dtype='uint8')).save(tmp_path / 'val' / c / f'{i}.png')
    return str(tmp_path / 'val')


def test_classifier_tool_top1_and_compensator(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('test_classifier', osp.join(ROOT, 'tools', 'test_classifier.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from mmtokred.compensators import build_compensator_for
    torch.manual_seed(0)
    cfg_path = _tiny_cfg(tmp_path)
    from mmtokred.analysis.models import load_config
    model = build_classifier(load_config(cfg_path))
    ckpt = str(tmp_path / 'w.pth')
    torch.save({'model': model.state_dict()}, ckpt)
    root = _folder(tmp_path)
    result = tool.main([cfg_path, ckpt, '--data-root', root, '--no-progress', '--batch-size', '4'])
    samples, classes = tool.image_folder(root)
    with torch.no_grad():
        logits = model(torch.stack([tool.preprocess(p, load_config(cfg_path).data) for p, _ in samples]))
    expected = 100 * float((logits.argmax(1) == torch.tensor([c for _, c in samples])).float().mean())
    assert result['images'] == 9 and result['top1'] == pytest.approx(expected)
    # a compensator through the config: folded (default) == branch
    degrees = [None, dict(reducer=dict(type='ToMe', mode='layer', r=2))]
    comp = build_compensator_for(model, degrees, rank=2)
    with torch.no_grad():
        comp.up.normal_()
    comp.save(str(tmp_path / 'c.pth'))
    opts = ['--cfg-options', 'reduction.reducer.type=ToMe', 'reduction.reducer.mode=layer', 'reduction.reducer.r=2',
            f'compensator.checkpoint={tmp_path / "c.pth"}']
    folded = build_classifier(load_config(cfg_path, _parse(opts[1:])), ckpt)
    branch = build_classifier(load_config(cfg_path, _parse(opts[1:] + ['compensator.mode=branch'])), ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(folded(x), branch(x))
    assert list(folded.state_dict()) == list(model.state_dict())
    with pytest.raises(ValueError, match='not one of the degrees'):
        build_classifier(load_config(cfg_path, _parse(opts[1:] + ['reduction.reducer.r=3'])), ckpt)


def _parse(options):
    out = {}
    for o in options:
        k, v = o.split('=', 1)
        out[k] = int(v) if v.isdigit() else v
    return out


def test_flops_of_tome_and_compensator_cost(tmp_path):
    """The MAC count of a ToMe classifier equals the hand formula; a compensator costs L*2*C*C*rank*|t-s| MACs
    as a branch and nothing folded."""
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.compensators import apply_compensator, build_compensator_for
    model = tiny(depth=3)
    C, hidden, classes, r = 24, 48, 5, [3, 3, 3]
    configure_timm_reduction(model, dict(type='ToMe', mode='layer', r=r))
    x = torch.zeros(1, 3, 32, 32)
    total = count_model_macs(model, x).total()
    n, expected = 17, 16 * C * 3 * 8 * 8            # patch embedding
    for left in remaining_tokens(17, r):
        expected += n * C * 3 * C + 2 * n * n * C + n * C * C    # qkv, QK^T + AV, proj
        n_a, n_b = (n + 1) // 2, n // 2
        expected += n_a * n_b * (C // 2)                         # matching on head-averaged keys
        n = left
        expected += 2 * n * C * hidden                           # MLP on the merged tokens
    expected += C * classes
    assert total == expected
    degrees = [None, dict(reducer=dict(type='ToMe', mode='layer', r=1)), dict(reducer=dict(type='ToMe', mode='layer',
                                                                                           r=3))]
    comp = build_compensator_for(model, degrees, rank=2)
    branch = apply_compensator(model, comp, 0, 2)
    assert count_model_macs(model, x).total() - total == 3 * 2 * C * C * 2 * 2
    branch.remove()
    apply_compensator(model, comp, 0, 2, mode='fold')
    assert count_model_macs(model, x).total() == total


def test_train_compensator_tool_on_a_classifier(tmp_path, capsys):
    """The CLI end to end on a tiny classifier: trains, resumes, publishes an fp16 compensator that the classifier
    config then folds."""
    import importlib.util

    import numpy as np
    from mmengine.config import Config
    from PIL import Image
    spec = importlib.util.spec_from_file_location('train_compensator', osp.join(ROOT, 'tools',
                                                                                'train_compensator.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg_path = _tiny_cfg(tmp_path)
    from mmtokred.analysis.models import load_config
    model = build_classifier(load_config(cfg_path))
    ckpt = str(tmp_path / 'w.pth')
    torch.save(model.state_dict(), ckpt)
    Config(dict(degrees=[None, dict(reducer=dict(type='ToMe', mode='layer', r=2)),
                         dict(reducer=dict(type='ToMe', mode='layer', r=4))], rank=2, scale=0.1)).dump(
        str(tmp_path / 'spec.py'))
    images = tmp_path / 'imgs'
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype='uint8')).save(images / f'{i}.jpg')
    args = [cfg_path, ckpt, '--spec', str(tmp_path / 'spec.py'), '--images', str(images), '--work-dir',
            str(tmp_path / 'work'), '--batch-size', '2', '--no-progress', '--held-out', str(images)]
    assert len(tool.main(args + ['--steps', '3'])) == 3
    published = str(tmp_path / 'c16.pth')
    assert len(tool.main(args + ['--steps', '5', '--resume', '--publish', published])) == 2
    out = capsys.readouterr().out
    assert 'held-out divergence after' in out and f'{published}  sha256 ' in out
    folded = build_classifier(load_config(cfg_path, {'reduction.reducer': dict(type='ToMe', mode='layer', r=4),
                                                     'compensator.checkpoint': published}), ckpt)
    assert torch.load(published, weights_only=True)['state_dict']['up'].dtype == torch.float16
    assert list(folded.state_dict()) == list(model.state_dict())
    with pytest.raises(SystemExit):
        tool.parse_args(args + ['--steps', '0'])


@pytest.mark.parametrize('name', ['deit-b16_224', 'deit-b16_224_tome-r8', 'deit-b16_224_tome-r16'])
def test_classification_configs_build_narrow(name):
    """The DeiT configs build (32 channels instead of 768, so that one forward is cheap) with timm's state dict."""
    from mmtokred.analysis.models import load_config
    cfg = load_config(osp.join(ROOT, 'configs', 'classification', f'{name}.py'),
                      {'model.embed_dim': 32, 'model.num_heads': 2})
    model = build_classifier(cfg)
    upstream = timm.create_model('deit_base_patch16_224', pretrained=False, embed_dim=32, num_heads=2)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in upstream.state_dict().items()}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_compensator_specs_list_valid_degrees():
    import glob

    from mmengine.config import Config

    from mmtokred.compensators import canonical_setting
    for path in glob.glob(osp.join(ROOT, 'configs', 'compensators', '*.py')):
        spec = Config.fromfile(path)
        canon = [canonical_setting(d, 12) for d in spec.degrees]
        assert canon[0] is None and all(c is not None for c in canon[1:]), path
        assert len({str(c) for c in canon}) == len(canon), path          # distinct degrees
