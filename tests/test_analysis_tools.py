"""The analysis tools run end to end on the tiny config (structure of their outputs only: nothing is timed)."""
import csv
import importlib.util
import os.path as osp

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
TINY = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')


def tool(name):
    return helpers.load_tool(f'analysis_tools/{name}.py')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('analysis')
    data, ckpt, _ = helpers.tiny_ade_and_checkpoint(tmp, num=2, config=TINY)
    return data, ckpt, tmp


def test_sweep_writes_csv_table_and_plot(tiny, capsys):
    data, ckpt, tmp = tiny
    out = tmp / 'sweep'
    rows = tool('sweep').main([TINY, ckpt, '--spec', osp.join(ROOT, 'configs', 'sweeps', 'tiny_sweep.py'),
                               '--out-dir', str(out), '--repeat-times', '2', '--warmup', '0', '--no-progress',
                               '--cfg-options', f'test_dataloader.dataset.data_root={data}'])
    assert [r['method'] for r in rows] == ['baseline'] + ['Token Adapter'] * 2 + ['Expediting'] * 2 + ['ToMe'] * 2
    with open(out / 'sweep.csv') as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7
    with open(out / 'sweep.partial.csv') as f:       # written after every point: the same rows, without timing
        partial = list(csv.DictReader(f))
    assert [(r['method'], r['mIoU']) for r in partial] == [(r['method'], r['mIoU']) for r in table]
    assert partial[1]['speedup'] == '' and table[1]['speedup'] != ''
    assert table[0]['method'] == 'baseline' and float(table[0]['GFLOPs_ratio']) == 1.0
    assert float(table[0]['agreement_mIoU']) == 100.0 and float(table[0]['pixel_agreement_pct']) == 100.0
    for r in table[1:]:
        low, high = float(r['retained_ci_low']), float(r['retained_ci_high'])
        assert (low <= high) or (low != low and high != high)   # an interval, or NaN when the baseline scores 0
        assert 0 <= float(r['pixel_agreement_pct']) <= 100
    with open(out / 'per_class.csv') as f:
        per_class = list(csv.reader(f))
    assert len(per_class) == 8 and per_class[0][:2] == ['method', 'setting'] and len(per_class[0]) == 2 + 150
    # the reduced points really are cheaper than the baseline, and cheaper the more they reduce
    gflops = [float(r['GFLOPs']) for r in table]
    assert all(g < gflops[0] for g in gflops[1:])
    assert gflops[2] < gflops[1] and gflops[4] < gflops[3] and gflops[6] < gflops[5]
    md = (out / 'sweep.md').read_text()
    assert md.count('\n') == 9 and 'r_h=0.4, r_w=0.4' in md and 'cluster_grid=(4, 4)' in md
    png = (out / 'pareto.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000
    # the screen: a header, one line per setting, the timing report and the summary; the per-class tables and
    # mmengine's messages in sweep.log
    screen = capsys.readouterr()
    assert 'per class results' not in screen.out + screen.err and 'mmengine' not in screen.out + screen.err
    assert screen.out.startswith(f'config: {TINY}\ncheckpoint: {ckpt}\n7 settings (baseline + 6)')
    assert len(screen.out.splitlines()) <= 35     # header 3, settings 7, timing <= 9, table 9, files 4
    assert (out / 'sweep.log').read_text().count('per class results') == 7


def _fake_maps(n, hw=(12, 16), num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    gts, preds = [], []
    for _ in range(n):
        gt = torch.randint(0, num_classes, hw, generator=g)
        gt[torch.rand(hw, generator=g) < 0.1] = 255                   # void pixels
        pred = torch.where(torch.rand(hw, generator=g) < 0.7, gt.clamp(max=num_classes - 1),
                           torch.randint(0, num_classes, hw, generator=g))
        gts.append(gt)
        preds.append(pred)
    return preds, gts


def test_class_areas_reproduce_mmseg_iou_metric():
    from mmseg.evaluation import IoUMetric

    from mmtokred.analysis.evaluate import class_areas, miou_from_areas
    preds, gts = _fake_maps(4)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=[f'c{k}' for k in range(5)])
    metric.process([], [dict(pred_sem_seg=dict(data=p[None]), gt_sem_seg=dict(data=g[None]))
                        for p, g in zip(preds, gts)])
    expected = metric.compute_metrics(metric.results)['mIoU']
    areas = torch.stack([class_areas(p, g, 5) for p, g in zip(preds, gts)])
    assert areas.shape == (4, 3, 5)
    assert float(miou_from_areas(areas.sum(0))) == pytest.approx(expected, abs=0.006)   # mmseg rounds to 0.01


def test_bootstrap_retained_interval():
    from mmtokred.analysis.evaluate import bootstrap_retained, class_areas, miou_from_areas
    preds, gts = _fake_maps(6)
    base = torch.stack([class_areas(p, g, 5) for p, g in zip(preds, gts)])
    # the same predictions: every paired resample retains exactly 100%, however different the images are
    assert bootstrap_retained(base, base.clone(), resamples=200) == pytest.approx((100.0, 100.0))
    # worse predictions on every image: an interval below 100% around the point estimate
    worse = torch.stack([class_areas(torch.where(torch.arange(p.numel()).view(p.shape) % 3 == 0, (p + 1) % 5, p),
                                     g, 5) for p, g in zip(preds, gts)])
    point = float(100 * miou_from_areas(worse.sum(0)) / miou_from_areas(base.sum(0)))
    low, high = bootstrap_retained(worse, base, resamples=500)
    assert low < point < high < 100
    # one image: every resample is that image, the interval collapses onto the point estimate
    assert bootstrap_retained(worse[:1], base[:1], resamples=50) == pytest.approx(
        (float(100 * miou_from_areas(worse[0]) / miou_from_areas(base[0])),) * 2)
    with pytest.raises(ValueError, match='base_areas'):
        bootstrap_retained(worse, base[:3])
    with pytest.raises(ValueError, match='level'):
        bootstrap_retained(worse, base, level=1.0)
    with pytest.raises(ValueError, match='resamples'):
        bootstrap_retained(worse, base, resamples=0)


def test_bootstrap_difference_interval():
    from mmtokred.analysis.evaluate import bootstrap_difference, class_areas, miou_from_areas
    preds, gts = _fake_maps(6)
    base = torch.stack([class_areas(p, g, 5) for p, g in zip(preds, gts)])
    assert bootstrap_difference(base, base.clone(), resamples=200) == pytest.approx((0.0, 0.0))
    worse = torch.stack([class_areas(torch.where(torch.arange(p.numel()).view(p.shape) % 3 == 0, (p + 1) % 5, p),
                                     g, 5) for p, g in zip(preds, gts)])
    point = float(miou_from_areas(worse.sum(0)) - miou_from_areas(base.sum(0)))
    low, high = bootstrap_difference(worse, base, resamples=500)
    assert low < point < high < 0
    assert bootstrap_difference(base, worse, resamples=500) == pytest.approx((-high, -low))   # same draws
    with pytest.raises(ValueError, match='other_areas'):
        bootstrap_difference(worse, base[:3])


def test_sweep_gain_over_a_compared_method():
    """A method with compare_to gets the mIoU gain over the other method's point of the same rank, with its
    paired interval, in the CSV and the Markdown table; a bad compare_to is a one-line error naming the method."""
    from mmtokred.analysis.evaluate import class_areas
    from mmtokred.utils.cli import InputError
    sweep = tool('sweep')
    preds, gts = _fake_maps(6)
    good = torch.stack([class_areas(p, g, 5) for p, g in zip(preds, gts)])
    bad = torch.stack([class_areas((p + 1) % 5, g, 5) for p, g in zip(preds, gts)])

    def row(method, miou, areas):
        return dict(method=method, setting='s', mIoU=miou, mIoU_retained_pct=90.0, retained_ci_low=85.0,
                    retained_ci_high=95.0, agreement_mIoU=50.0, pixel_agreement_pct=80.0, GFLOPs=1.0,
                    GFLOPs_ratio=2.0, speedup=1.5, median_ms=3.0, areas=areas)
    rows = [row('A', 40.0, bad), row('A + C', 45.0, good)]
    sweep.add_gains(rows, {'A + C': 'A'}, bootstrap=200)
    assert 'gain' not in rows[0] and rows[1]['gain'] == 5.0 and rows[1]['compared_to'] == 'A'
    assert 0 < rows[1]['gain_ci_low'] <= rows[1]['gain_ci_high']
    md = sweep.markdown_table(rows)
    assert md.splitlines()[0].endswith('gain [95% interval] |') and '+5.00 [' in md.splitlines()[3]
    with pytest.raises(InputError, match="method 'B'.*compare_to"):
        sweep.expand_points(None, dict(methods=[dict(name='A', model={}, points=[{}]),
                                                dict(name='B', model={}, points=[{}, {}], compare_to='A')]))
    pair = dict(methods=[dict(name='A', model={}, points=[{}]), dict(name='B', model={}, points=[{}], compare_to='A')])
    with pytest.raises(InputError, match="--methods: 'C' is not a method of the sweep spec; its methods: 'A', 'B'"):
        sweep.expand_points(None, pair, only=['C'])
    with pytest.raises(InputError, match="--methods: 'B' is compared to 'A'; select both"):
        sweep.expand_points(None, pair, only=['B'])


def test_sweep_runs_only_the_selected_methods():
    from mmengine.config import Config
    spec = Config.fromfile(osp.join(ROOT, 'configs', 'sweeps', 'tiny_sweep.py'))
    points = tool('sweep').expand_points(Config.fromfile(TINY), spec, only=['ToMe', 'Token Adapter'])
    assert [(m, s) for m, s, _ in points] == [('baseline', '-'), ('Token Adapter', 'r_h=0.2, r_w=0.2'),
                                              ('Token Adapter', 'r_h=0.4, r_w=0.4'), ('ToMe', 'ratio=0.25'),
                                              ('ToMe', 'ratio=0.5')]
    assert points[3][2].model.backbone.reducer.type == 'ToMe'


def test_pixel_agreement():
    from mmtokred.analysis.evaluate import agreement_pixels
    a = torch.zeros(4, 5, dtype=torch.uint8)
    b = a.clone()
    b[0, :] = 1
    assert agreement_pixels([a, a], [a, b]) == pytest.approx(100 * 35 / 40)


def test_plot_floor_leaves_out_only_collapsed_points():
    limit = tool('sweep').lower_plot_limit
    assert limit([48.0, 46.5, 47.0], 48.0) is None                       # everything fits: no floor
    floor = limit([48.0, 46.5, 47.0, 11.8], 48.0)                         # one collapsed point (< 80% kept)
    assert 11.8 < floor < 46.5 and floor == pytest.approx(46.5 - 0.5)


def test_pareto_front():
    front = tool('sweep').pareto_front([(1, 50), (2, 49), (2, 55), (3, 54), (4, 60)])
    assert front == [(1, 50), (2, 55), (4, 60)]


def test_get_flops_table(capsys):
    counter = tool('get_flops').main([osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py'),
                                      '--shape', '96', '128'])
    out = capsys.readouterr().out
    for name in ('backbone: before reduction', 'reduction ops: reduce', 'backbone: reduced span',
                 'reduction ops: restore', 'decode head / neck', 'total'):
        assert name in out
    assert f'{counter.total() / 1e9:.2f}' in out


def test_benchmark_compare_rows(capsys):
    configs = [TINY, osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')]
    rows = tool('benchmark').main([configs[0], '--compare', configs[1], '--repeat-times', '2', '--warmup', '0',
                                   '--batch-size', '2', '--phase-repeat', '1', '--no-progress'])
    assert [r['config'] for r in rows] == configs
    assert rows[0]['speedup'] == 1.0 and rows[0]['flops_ratio'] == 1.0
    assert rows[1]['flops_ratio'] > 1.0 and rows[1]['reduction_ms'] > 0
    out = capsys.readouterr().out
    assert 'speed-up' in out and 'batch 2' in out


def test_benchmark_dataset_mode_loops_small_datasets(tiny):
    data, ckpt, tmp = tiny
    rows = tool('benchmark').main([TINY, '--dataset', '--repeat-times', '5', '--warmup', '1', '--no-progress',
                                   '--cfg-options', f'test_dataloader.dataset.data_root={data}'])
    assert rows[0]['fps'] > 0   # 2 images, 6 runs: the loader was looped


@pytest.mark.parametrize('method', ['tokenadapter', 'expedit', 'tome'])
def test_visualize_tokens(method, tiny):
    data, ckpt, tmp = tiny
    image = osp.join(data, 'images', 'validation', 'ADE_valid_00000000.jpg')
    out = str(tmp / f'{method}.png')
    tool('visualize_tokens').main([image, osp.join(ROOT, 'configs', 'tiny', f'segmenter_tiny_{method}_ade.py'),
                                   '--checkpoint', ckpt, '--out', out])
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_visualize_tokens_on_swin(tiny):
    """A Swin config: every window of the first reduced stage is laid out on the image (the host's token_map), with
    the Token Adapter's panels."""
    data, _, tmp = tiny
    image = osp.join(data, 'images', 'validation', 'ADE_valid_00000000.jpg')
    config = osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_tokenadapter_ade.py')
    from mmtokred import reduction_plan
    vt = tool('visualize_tokens')
    torch.manual_seed(0)
    model = vt.load_model(config)
    reduction, _, _, rgb = vt.capture_reduction(model, image)
    panels, patch = vt.token_panels(model, reduction, rgb.shape[:2])
    assert set(panels) == {'removed rows / columns', 'roles: teal normal / grey representative / orange unique',
                           'groups: reduced token restored from'}
    h, w = next(iter(panels.values())).shape[:2]
    assert all(p.shape[:2] == (h, w) for p in panels.values())
    assert patch == 4 * 2 ** reduction_plan(model).spans[0].stage
    assert (h - 1) * patch < rgb.shape[0] <= h * patch and (w - 1) * patch < rgb.shape[1] <= w * patch
    # 96 x 128 -> 6 x 8 tokens at stage 2: two 7 x 7 windows side by side (padded), each reduced to 5 x 5
    assign = reduction.assignment()
    assert tuple(assign.shape) == (2, 7, 7) and (h, w) == (6, 8)
    expected = torch.cat([assign[0], assign[1] + 25], 1)[:h, :w].flatten().tolist()
    colours = [tuple(c) for c in panels['groups: reduced token restored from'].reshape(-1, 3)]
    assert len(set(zip(expected, colours))) == len(set(expected)) == len(set(colours))   # one colour per group
    assert min(expected) < 25 <= max(expected)                                           # from both windows
    out = str(tmp / 'swin.png')
    vt.main([image, config, '--out', out])
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
