"""tools/analysis_tools/autotune.py end to end on tiny models of every host (images-only folders), the written
config through tools/test.py, resuming, and the one-line errors on bad input."""
import importlib.util
import math
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmtokred.utils import run_cli

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

TINY_SEG = 'configs/tiny/segmenter_tiny_ade.py'
tool = helpers.load_tool


def autotune():
    return tool('analysis_tools/autotune.py')


def image_folder(path, num=2, sizes=((96, 128), (120, 90))):
    """An images-only folder (no annotation anywhere near it) of random images."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(num):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(osp.join(path, f'img{i}.jpg'))
    return str(path)


def save_checkpoint(config, path, seed=0):
    torch.manual_seed(seed)
    model = helpers.build_model(helpers.load_cfg(config))
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path)


@pytest.fixture(autouse=True)
def coarse_bisection(monkeypatch):
    """3 bisection steps instead of 7: the search is the same, the tests faster."""
    from mmtokred.analysis import autotune as at
    monkeypatch.setattr(at, 'BISECTION_STEPS', 3)


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    """The tiny Segmenter's ADE folder, its checkpoint, and a copy of its images alone."""
    tmp = tmp_path_factory.mktemp('autotune')
    data, ckpt, _ = helpers.tiny_ade_and_checkpoint(tmp, num=3, config=TINY_SEG)
    images = tmp / 'images_only'
    shutil.copytree(osp.join(data, 'images', 'validation'), images)
    return data, ckpt, str(images), tmp


def refuse_annotations(monkeypatch):
    """Any annotation loader (mmcv's and every subclass: mmseg's, mmdet's) fails the test if it is called."""
    from mmcv.transforms import LoadAnnotations

    def refuse(self, results):
        raise AssertionError('an annotation was opened')
    for cls in (LoadAnnotations, *LoadAnnotations.__subclasses__()):
        monkeypatch.setattr(cls, 'transform', refuse)


@pytest.fixture
def no_annotations(monkeypatch):
    refuse_annotations(monkeypatch)


@pytest.fixture(scope='module')
def seg_run(seg):
    """One search on the tiny Segmenter with the images alone (annotation loaders refused): (argv, what the tool
    returned)."""
    from mmtokred.analysis import autotune as at
    _, ckpt, images, tmp = seg
    argv = [TINY_SEG, ckpt, '--budget', '0.8', '--images', images, '--work-dir', str(tmp / 'wd'), '--methods',
            'TokenAdapter', '--no-progress']
    with pytest.MonkeyPatch.context() as mp:
        refuse_annotations(mp)
        mp.setattr(at, 'BISECTION_STEPS', 3)
        return argv, autotune().main(argv)


def test_segmenter_end_to_end_and_the_config_reproduces_the_score(seg, seg_run):
    """Tiny Segmenter ViT, images only: ranked table, CSV, plot and a config inheriting the user's; the config
    passes tools/test.py unchanged and, scored against the unreduced model's smoothed maps as labels (the score's
    ground truth), reproduces the score the tool printed for it, and against its raw maps the plain agreement."""
    data, ckpt, _, tmp = seg
    wd = tmp / 'wd'
    tuner, rows, chosen = seg_run[1]
    ranking = rows[0.8]
    assert ranking and all(r['GFLOPs_share'] <= 0.8 for r in ranking)
    assert [r['score'] for r in ranking if r['complete']] == sorted((r['score'] for r in ranking if r['complete']),
                                                                     reverse=True)
    assert all(r['low'] <= r['high'] for r in ranking)
    for name in ('autotune.md', 'autotune.csv', 'autotune.png', 'autotune_budget0.8.py'):
        assert osp.isfile(wd / name), name
    text = open(chosen[0.8]).read()
    assert f"_base_ = ['{osp.relpath(osp.join(helpers.ROOT, TINY_SEG), wd)}']" in text
    assert 'model = dict(' in text and text.count('\n') == 4   # two comment lines, _base_, model: nothing else
    labels = osp.join(data, 'annotations', 'validation')
    for maps, column in ((tuner.targets, 'score'), ([ref.argmax(0) for ref in tuner.reference], 'plain')):
        for path, label in zip(tuner.images, maps):   # the labels: the unreduced model's (smoothed) maps
            name = osp.splitext(osp.basename(path))[0] + '.png'
            Image.fromarray((label + 1).to(torch.uint8).numpy()).save(osp.join(labels, name))  # reduce_zero_label
        metrics = tool('test.py').main([chosen[0.8], ckpt, '--work-dir', str(tmp / 'test_wd'), '--cfg-options',
                                        f'test_dataloader.dataset.data_root={data}'])
        assert metrics['mIoU'] == pytest.approx(ranking[0][column], abs=0.01), column
    assert any(not torch.equal(t, ref.argmax(0)) for t, ref in zip(tuner.targets, tuner.reference))


def test_box_filter_is_the_clipped_window_mean():
    """The cumulative-sum box filter equals average pooling with the window clipped at the borders, for odd
    windows larger than the map too."""
    from mmtokred.analysis.autotune import box_filter
    x = torch.randn(3, 11, 17)
    for k in (1, 3, 7, 15, 25):
        torch.testing.assert_close(box_filter(x, k), F.avg_pool2d(x[None], k, 1, k // 2, count_include_pad=False)[0])
    torch.testing.assert_close(box_filter(x, 35), x.mean((1, 2), keepdim=True).expand_as(x))


def test_smoothed_teacher_score(seg):
    """The segmentation score's ground truth is the teacher's map smoothed over two patch strides (in output
    pixels): a candidate whose logits are the smoothed teacher's scores 100 on it and less against the raw map;
    the teacher itself the reverse."""
    from mmtokred.analysis import autotune as at
    from mmtokred.analysis.models import load_config
    host = at.AutotuneHost(load_config(osp.join(helpers.ROOT, TINY_SEG)))
    assert host.smoothing_window(dict(inputs=torch.zeros(1, 3, 64, 96)), torch.zeros(5, 64, 96)) == \
        2 * host.patch + 1
    assert host.smoothing_window(dict(inputs=torch.zeros(1, 3, 128, 96)), torch.zeros(5, 64, 48)) == host.patch + 1
    torch.manual_seed(0)
    teacher = F.interpolate(torch.randn(1, 4, 6, 8), (48, 64), mode='bilinear')[0] + 0.5 * torch.randn(4, 48, 64)
    window = 2 * host.patch + 1
    target = at.smoothed_teacher_map(teacher, window)
    assert torch.equal(target, at.box_filter(teacher, window).argmax(0))
    for out, smoothed_wins in ((at.box_filter(teacher, window), True), (teacher, False)):
        stats, _ = at.image_statistics(host, out, teacher, target)
        stats = torch.tensor(stats, dtype=torch.float64)
        score, plain = float(at.score_from_stats(host, stats)), float(at.score_from_stats(host, stats, plain=True))
        assert (score, plain) == ((100.0, pytest.approx(plain)) if smoothed_wins else (pytest.approx(score), 100.0))
        assert min(score, plain) < 100


def test_resumes_from_the_work_dir(seg_run, monkeypatch):
    """The same command again: nothing is scored or counted again (only the teacher runs), the same ranking."""
    from mmtokred.analysis import autotune as at
    argv, (first_tuner, first, _) = seg_run
    calls = []
    upstream_run, upstream_count = at.AutotuneHost.run, at.Autotuner.count_macs
    monkeypatch.setattr(at.AutotuneHost, 'run', lambda *a: calls.append('run') or upstream_run(*a))
    monkeypatch.setattr(at.Autotuner, 'count_macs', lambda *a: calls.append('count') or upstream_count(*a))
    _, again, _ = autotune().main(argv)
    assert calls == ['count'] + ['run'] * len(first_tuner.images)     # the unreduced MACs, the teacher's outputs
    assert [(r['setting'], r['score']) for r in again[0.8]] == [(r['setting'], r['score']) for r in first[0.8]]


def test_shared_blocks_run_once_and_change_nothing(seg):
    """The blocks before a reduction site run once per image (recorded on the unreduced model) and are replayed
    for every candidate that reduces there: its output is the one it computes itself, for every kind of placement
    (after a block, inside it with the attention as importance, per sub-block)."""
    from mmtokred.analysis import autotune as at
    from mmtokred.analysis.models import load_config
    _, ckpt, images, _ = seg
    tuner = at.Autotuner(load_config(osp.join(helpers.ROOT, TINY_SEG)), ckpt, at.list_images(images, 1), [0.9],
                         progress=False)
    tuner.prepare(search=False)
    tuner.candidates = [at.Candidate(s, s.amount.strong, 0.9, 0.0) for s in at.method_settings(
        tuner.host, ['TokenAdapter', 'ToMe', 'EViT'])]
    tuner.teacher_outputs()
    replayed = 0
    for c in tuner.candidates:
        block = tuner.host.shared_prefix(c.placement, c.reducer)
        model = tuner.host.build(tuner.host.candidate_cfg(c.placement, c.reducer), tuner.state_dict)
        for i in range(len(tuner.inputs)):
            torch.testing.assert_close(tuner.run_candidate(c, model, i), tuner.host.run(model, tuner.inputs[i]))
            replayed += block is not None
        assert len(model.backbone.layers) == 4 and not any(isinstance(m, torch.nn.Identity)
                                                           for m in model.backbone.layers)
    assert replayed >= len(tuner.candidates) // 2      # EViT ranks by layer 0's attention: nothing shared


def test_successive_halving_down_to_the_finalists(seg):
    """--screen-images 1 --finalists 1 on 3 images: every candidate is scored on 1 image, the better half on 2,
    the best of those on all 3 (and ranks first: complete candidates come first)."""
    _, ckpt, images, tmp = seg
    _, rows, chosen = autotune().main([TINY_SEG, ckpt, '--budget', '0.8', '--images', images, '--work-dir',
                                       str(tmp / 'halving'), '--methods', 'TokenAdapter', '--screen-images', '1',
                                       '--finalists', '1', '--no-progress'])
    counts = [r['images'] for r in rows[0.8]]
    n = len(counts)
    assert n >= 3 and counts[0] == 3 and rows[0.8][0]['complete'] and chosen
    assert sorted(counts, reverse=True) == [3] + [2] * (math.ceil(n / 2) - 1) + [1] * (n - math.ceil(n / 2))


def test_max_minutes_stops_with_what_is_done(seg, capsys):
    _, ckpt, images, tmp = seg
    _, rows, chosen = autotune().main([TINY_SEG, ckpt, '--budget', '0.8', '--images', images, '--work-dir',
                                       str(tmp / 'stop'), '--methods', 'TokenAdapter', '--max-minutes', '1e-9',
                                       '--no-progress'])
    out = capsys.readouterr().out
    assert '--max-minutes 1e-09 reached' in out and 'no candidate was scored' in out
    assert not chosen


def test_written_config_replaces_a_reducer_of_the_base(tmp_path):
    """A base that already reduces: the written reducer replaces it (``_delete_``), nothing of the old one
    survives the merge, and the placement is stated in full."""
    from mmengine.config import Config

    from mmtokred.analysis.autotune import AutotuneHost
    base = osp.join(helpers.ROOT, 'configs/tiny/segmenter_tiny_tokenadapter_ade.py')
    host = AutotuneHost(Config.fromfile(base))
    assert host.base_has_reducer()
    reducer = dict(type='Pooling', mode='avg', restore_mode='bilinear', ratio=0.5)
    path = tmp_path / 'out.py'
    path.write_text(host.config_text(base, dict(reduce_after_layer=1, restore_after_layer=3, restore_site='backbone'),
                                     reducer, True))
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.reducer.to_dict() == reducer
    assert (cfg.model.backbone.reduce_after_layer, cfg.model.backbone.restore_after_layer) == (1, 3)


def _classifier(tmp_path):
    from mmengine.config import Config

    from mmtokred.compensators import build_classifier
    cfg = Config(dict(model=dict(type='TimmVisionTransformer', name='vit_tiny_patch16_224', img_size=32,
                                 patch_size=8, depth=4, num_classes=5),
                      data=dict(resize=36, crop=32, mean=[127.5] * 3, std=[127.5] * 3), reduction=dict()))
    path = str(tmp_path / 'cls.py')
    cfg.dump(path)
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'cls.pth')
    torch.save(build_classifier(cfg).state_dict(), ckpt)
    return path, ckpt


@pytest.mark.parametrize('config,methods,budget', [
    ('configs/tiny/mask2former_tiny_ade.py', ['TokenAdapter'], 0.97),           # mmseg Mask2Former, Swin
    ('configs/tiny/mask2former_tiny_coco-instance.py', ['Pooling'], 0.97),      # mmdet Mask2Former, Swin
    ('configs/tiny/maskdino_tiny_coco-instance.py', ['TokenAdapter'], 0.97),    # mmdet MaskDINO, Swin
    ('timm', ['TokenAdapter', 'ToMe'], 0.8),                                    # timm classifier
])
def test_every_host_end_to_end(config, methods, budget, tmp_path, no_annotations):
    from mmengine.config import Config
    if config == 'timm':
        pytest.importorskip('timm')
        config, ckpt = _classifier(tmp_path)
        expected = 'top-1 agreement'
    else:
        ckpt = save_checkpoint(config, tmp_path / 'model.pth')
        expected = 'feature agreement' if 'coco' in config else 'agreement mIoU'
    images = image_folder(tmp_path / 'images')
    tuner, rows, chosen = autotune().main([config, ckpt, '--budget', str(budget), '--images', images,
                                           '--work-dir', str(tmp_path / 'wd'), '--methods', *methods,
                                           '--no-progress'])
    ranking = rows[budget]
    assert ranking and ranking[0]['complete'] and ranking[0]['GFLOPs_share'] <= budget
    assert {r['method'] for r in ranking} <= set(methods)
    assert expected in open(tmp_path / 'wd' / 'autotune.md').read()
    cfg = Config.fromfile(chosen[budget])                                   # the written config loads and builds
    model = tuner.host.build(cfg, tuner.state_dict)
    from mmtokred import reducers_of
    assert reducers_of(model)
    if tuner.host.task == 'backbone':   # identical outputs score 100
        assert 0 < ranking[0]['score'] < 100


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line each, before any scoring
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_scoring(monkeypatch):
    from mmtokred.analysis.autotune import Autotuner
    monkeypatch.setattr(Autotuner, 'run', lambda self: pytest.fail('scoring started before the input was checked'))


@pytest.mark.parametrize('budget', ['0', '1.5', '-0.2'])
def test_budget_outside_zero_one(budget, seg, capsys):
    _, ckpt, images, _ = seg
    with pytest.raises(SystemExit):
        autotune().parse_args([TINY_SEG, ckpt, '--budget', budget, '--images', images])
    assert f'--budget must be in (0, 1] (a share of the unreduced GFLOPs), got {float(budget):g}' in \
        capsys.readouterr().err


@pytest.mark.parametrize('option', ['--screen-images', '--finalists'])
def test_screen_images_and_finalists_must_be_positive(option, seg, capsys):
    _, ckpt, images, _ = seg
    with pytest.raises(SystemExit):
        autotune().parse_args([TINY_SEG, ckpt, '--budget', '0.8', '--images', images, option, '0'])
    assert f'argument {option}: ' in capsys.readouterr().err


def _error_line(argv, capsys):
    assert run_cli(autotune().main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unreachable_budget_names_the_smallest_reachable(seg, capsys, no_scoring, tmp_path):
    _, ckpt, images, _ = seg
    line = _error_line([TINY_SEG, ckpt, '--budget', '0.05', '--images', images, '--methods', 'TokenAdapter',
                        '--work-dir', str(tmp_path), '--no-progress'], capsys)
    assert line.startswith('error: --budget 0.05 cannot be reached by TokenAdapter on this model: the smallest '
                           'reachable is 0.')


def test_empty_and_unreadable_image_folders(seg, capsys, no_scoring, tmp_path):
    _, ckpt, _, _ = seg
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no image here')
    line = _error_line([TINY_SEG, ckpt, '--budget', '0.8', '--images', str(empty), '--work-dir', str(tmp_path)],
                       capsys)
    assert line.startswith('error: --images: no image (') and str(empty) in line
    broken = tmp_path / 'broken'
    image_folder(broken, num=1)
    (broken / 'zz.png').write_bytes(b'not a png')
    line = _error_line([TINY_SEG, ckpt, '--budget', '0.8', '--images', str(broken), '--work-dir', str(tmp_path)],
                       capsys)
    assert line.startswith(f'error: --images: cannot read {broken / "zz.png"} as an image')


def test_method_that_cannot_run_on_the_host(tmp_path, capsys, no_scoring):
    config = 'configs/tiny/mask2former_tiny_ade.py'
    ckpt = save_checkpoint(config, tmp_path / 'model.pth')
    images = image_folder(tmp_path / 'images', num=1)
    line = _error_line([config, ckpt, '--budget', '0.8', '--images', images, '--methods', 'ToMe', '--work-dir',
                        str(tmp_path)], capsys)
    assert line.startswith('error: --methods: ToMe cannot run on this host (swin, segmentation): ')
    line = _error_line([config, ckpt, '--budget', '0.8', '--images', images, '--methods', 'Magic', '--work-dir',
                        str(tmp_path)], capsys)
    assert line.startswith("error: --methods: unknown method 'Magic'; valid: TokenAdapter Expediting ToMe EViT MSTM "
                           'Pooling')
