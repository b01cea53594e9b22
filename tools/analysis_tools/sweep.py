"""Sweep reducer settings on one config and dataset: metric, GFLOPs and speed-up per point, as CSV, Markdown and a
Pareto plot (accuracy vs GFLOPs and vs speed-up, every method on one figure, like Token Adapter's Fig. 4).

    python tools/analysis_tools/sweep.py CONFIG CHECKPOINT --spec SPEC.py --out-dir DIR
        [--methods NAME ...] [--shape H W] [--repeat-times N] [--warmup N] [--max-images N] [--num-threads N]
        [--cfg-options ...]

CONFIG is the unreduced model (the baseline row). SPEC is a config file with a list ``methods``; each method has
a ``name``, a ``model`` dict merged into CONFIG's model (backbone type, insertion layers, reducer type, ...) and
``points``: dicts merged into ``model.backbone.reducer``; optionally ``compare_to``: the name of another method
with as many points, whose point i this method's point i is compared with (the mIoU gain and its 95%
paired-bootstrap interval, e.g. a compensated reduction against the same reduction alone). See
``configs/sweeps/``. For every point: the test-set metric, the share of the baseline's mIoU it retains with a
95% paired-bootstrap interval over the test images
(``--bootstrap`` resamples; the interval says how much of a difference between two rows the test set can
resolve), the agreement with the baseline's predictions (mIoU and % of equal pixels), the GFLOPs of one input at
``--shape``, and the speed-up over the baseline, all points timed interleaved in one process. Per-class IoUs go to
``per_class.csv``; while the sweep runs, ``sweep.partial.csv`` holds the points evaluated so far (no timing).
Every point's settings, the checkpoint and the test data are checked before the first model is built. The timing
prints its input shape and the machine load, and warns when the machine was loaded, the spread is large or a
speed-up is implausible for its GFLOPs ratio.
"""
import argparse
import copy
import csv
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

COLUMNS = ['method', 'setting', 'mIoU', 'mIoU_retained_pct', 'retained_ci_low', 'retained_ci_high',
           'agreement_mIoU', 'pixel_agreement_pct', 'GFLOPs', 'GFLOPs_ratio', 'speedup', 'median_ms']
GAIN_COLUMNS = ['compared_to', 'gain', 'gain_ci_low', 'gain_ci_high']   # only when a method has compare_to


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_num_threads_arg, add_shape_arg
    p = argparse.ArgumentParser(description='Sweep reducer settings')
    p.add_argument('config', help='the unreduced model config (baseline)')
    p.add_argument('checkpoint', help='checkpoint for every point (trusted file)')
    p.add_argument('--spec', required=True, help='sweep spec: a config file with a list `methods`')
    p.add_argument('--out-dir', required=True)
    add_shape_arg(p, 'for GFLOPs and timing; default: the test crop')
    p.add_argument('--repeat-times', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--max-images', type=int, help='evaluate on the first N test images only')
    p.add_argument('--bootstrap', type=int, default=2000,
                   help='paired-bootstrap resamples for the retained-mIoU interval (0: none)')
    p.add_argument('--metric', default='mIoU')
    p.add_argument('--methods', nargs='+', metavar='NAME',
                   help="run only these methods of the spec (their `name`s; the baseline always runs)")
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--verbose', action='store_true',
                   help="show mmengine's log and the per-class tables on screen (always in OUT_DIR/sweep.log)")
    add_num_threads_arg(p)
    add_cfg_options_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.repeat_times < 1:
        p.error(f'--repeat-times must be >= 1, got {args.repeat_times}')
    if args.warmup < 0:
        p.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.max_images is not None and args.max_images < 1:
        p.error(f'--max-images must be >= 1, got {args.max_images}')
    if args.bootstrap < 0:
        p.error(f'--bootstrap must be >= 0 (0: no interval), got {args.bootstrap}')
    return args


def expand_points(base_cfg, spec, only=None):
    """[(method, setting label, cfg)] starting with the baseline; every point's reduction settings are checked
    (one-line InputError naming the method and the point). ``only``: names of the methods to keep (None: all)."""
    from mmtokred.hosts.settings import check_reduction_settings
    from mmtokred.utils.cli import InputError
    points = [('baseline', '-', base_cfg)]
    methods = {m['name']: m for m in spec['methods']}
    unknown = [name for name in only or () if name not in methods]
    if unknown:
        raise InputError(f'--methods: {unknown[0]!r} is not a method of the sweep spec; its methods: '
                         + ', '.join(repr(n) for n in methods))
    for method in spec['methods']:
        other = method.get('compare_to')
        if other is not None and (other not in methods or other == method['name']
                                  or len(methods[other]['points']) != len(method['points'])):
            raise InputError(f"sweep spec, method {method['name']!r}: compare_to must name another method with as "
                             f"many points ({len(method['points'])}), got {other!r}")
        if only and method['name'] in only and other is not None and other not in only:
            raise InputError(f"--methods: {method['name']!r} is compared to {other!r}; select both")
    for method in spec['methods']:
        if only and method['name'] not in only:
            continue
        for point in method['points']:
            cfg = copy.deepcopy(base_cfg)
            cfg.merge_from_dict(dict(model=copy.deepcopy(method['model'])))
            cfg.model.backbone.reducer.update(point)
            label = ', '.join(f'{k}={v}' for k, v in point.items())
            try:
                check_reduction_settings(cfg)
            except InputError as e:
                raise InputError(f"sweep spec, method {method['name']!r}, point {label}: {e}") from e
            points.append((method['name'], label, cfg))
    return points


def check_unreduced(cfg, config):
    """The baseline (first row, the reference of every agreement figure and speed-up) must be unreduced."""
    from mmtokred.utils.cli import InputError
    from mmtokred.utils.run_output import describe_reduction
    reduction = describe_reduction(cfg)
    if reduction != 'none':
        raise InputError(f'sweep: the baseline config {config} is itself reduced ({reduction}); give the unreduced '
                         "config (e.g. this one's _base_): the spec's methods add the reductions to it")


def run_sweep(config, checkpoint, spec_path, out_dir, shape=None, repeat=5, warmup=1, max_images=None,
              metric='mIoU', cfg_options=None, progress=True, bootstrap=2000, verbose=False, only=None):
    import torch
    from mmengine.config import Config

    from mmtokred.analysis.evaluate import bootstrap_retained, build_test_loader_and_evaluator, evaluate_segmentor
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import build_model, input_shape, load_config, tensor_forward
    from mmtokred.analysis.timing import measure_machine_load, report_timing, summarize, time_interleaved
    from mmtokred.utils.checkpoint import check_checkpoint_readable
    from mmtokred.utils.cli import check_dataset_folders, check_file
    from mmtokred.utils.config_checks import check_image_files
    from mmtokred.utils.run_output import console_to_file

    check_file(checkpoint, 'checkpoint')
    check_checkpoint_readable(checkpoint)
    check_file(spec_path, '--spec')
    base = load_config(config, cfg_options)
    check_unreduced(base, config)
    check_dataset_folders(base, ['test_dataloader'])
    check_image_files(base, ['test_dataloader'])
    spec = Config.fromfile(spec_path)
    points = expand_points(base, spec, only)
    hw = input_shape(base, shape)
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    compare_to = {m['name']: m['compare_to'] for m in spec['methods'] if m.get('compare_to')}
    rows, runs, reference, base_areas, classes = [], {}, None, None, None
    os.makedirs(out_dir, exist_ok=True)
    log = osp.join(out_dir, 'sweep.log')
    print(f'config: {config}\ncheckpoint: {checkpoint}\n{len(points)} settings (baseline + {len(points) - 1}); '
          f'GFLOPs and timing at {hw[0]}x{hw[1]}; per-class tables and the log: {log}', flush=True)
    for i, (method, setting, cfg) in enumerate(points):
        with console_to_file(log, verbose):
            model = build_model(cfg, checkpoint)
            loader, evaluator = build_test_loader_and_evaluator(cfg, max_images)
            classes = loader.dataset.metainfo['classes']
            ev = evaluate_segmentor(model, loader, evaluator, reference, len(classes), progress)
        print(f'[{i + 1}/{len(points)}] {method} {setting}: {metric} {float(ev.metrics[metric]):.2f} on '
              f'{len(loader.dataset)} images', flush=True)
        if reference is None:
            reference, base_areas = ev.preds, ev.areas
        low = high = float('nan')
        if bootstrap and len(ev.areas) and len(ev.areas) == len(base_areas):
            low, high = bootstrap_retained(ev.areas, base_areas, resamples=bootstrap)
        macs = count_model_macs(model, x, tensor_forward).total()
        rows.append(dict(method=method, setting=setting, mIoU=float(ev.metrics[metric]), retained_ci_low=low,
                         retained_ci_high=high, agreement_mIoU=100.0 if ev.agreement is None else ev.agreement,
                         pixel_agreement_pct=100.0 if ev.pixel_agreement is None else ev.pixel_agreement,
                         GFLOPs=macs / 1e9, per_class=_class_ious(ev.areas, classes), areas=ev.areas))
        runs[i] = (lambda m: (lambda: _forward(m, x, tensor_forward)))(model)
        # what is evaluated so far survives an interruption (the timing columns come at the end)
        write_csv(rows, osp.join(out_dir, 'sweep.partial.csv'))
    with measure_machine_load() as load:
        times = time_interleaved(runs, repeat, warmup, progress=progress)
    base_row, base_t = rows[0], summarize(times[0])['median']
    for i, row in enumerate(rows):
        t = summarize(times[i])
        row.update(mIoU_retained_pct=100 * row['mIoU'] / base_row['mIoU'] if base_row['mIoU'] else float('nan'),
                   GFLOPs_ratio=base_row['GFLOPs'] / row['GFLOPs'], speedup=base_t / t['median'],
                   median_ms=1e3 * t['median'], iqr_pct=t['iqr_pct'])
    if compare_to:
        add_gains(rows, compare_to, bootstrap)
    report_timing([dict(name=f"{r['method']} {r['setting']}", speedup=r['speedup'], flops_ratio=r['GFLOPs_ratio'],
                        iqr_pct=r['iqr_pct']) for r in rows], load, hw)
    paths = dict(csv=osp.join(out_dir, 'sweep.csv'), md=osp.join(out_dir, 'sweep.md'),
                 png=osp.join(out_dir, 'pareto.png'), per_class=osp.join(out_dir, 'per_class.csv'))
    write_csv(rows, paths['csv'])
    write_per_class_csv(rows, classes, paths['per_class'])
    with open(paths['md'], 'w') as f:
        f.write(markdown_table(rows) + '\n')
    plot_pareto(rows, paths['png'], title=f'{osp.basename(config)} @ {hw[0]}x{hw[1]}', metric=metric)
    return rows, paths


def add_gains(rows, compare_to, bootstrap=2000):
    """Rows of a method with ``compare_to`` get the mIoU gain over the compared method's point of the same rank,
    with its paired-bootstrap interval (NaN without --bootstrap)."""
    from mmtokred.analysis.evaluate import bootstrap_difference
    by_method = {}
    for r in rows:
        by_method.setdefault(r['method'], []).append(r)
    for name, other in compare_to.items():
        for r, o in zip(by_method.get(name, []), by_method.get(other, [])):
            low = high = float('nan')
            if bootstrap and len(r['areas']):
                low, high = bootstrap_difference(r['areas'], o['areas'], resamples=bootstrap)
            r.update(compared_to=other, gain=r['mIoU'] - o['mIoU'], gain_ci_low=low, gain_ci_high=high)


def _forward(model, x, tensor_forward):
    import torch
    with torch.no_grad():
        tensor_forward(model, x)


def _class_ious(areas, classes):
    """IoU (%) per class from the per-image areas (N, 3, K) (NaN where a class is absent from both maps)."""
    from mmtokred.analysis.evaluate import iou_from_areas
    return dict(zip(classes, iou_from_areas(areas.sum(0)).tolist()))


def write_per_class_csv(rows, classes, path):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['method', 'setting', *classes])
        for r in rows:
            w.writerow([r['method'], r['setting'], *(f"{r['per_class'][c]:.2f}" for c in classes)])


def write_csv(rows, path):
    columns = COLUMNS + (GAIN_COLUMNS if any('gain' in r for r in rows) else [])
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{r[k]:.4f}' if isinstance(r.get(k), float) else r.get(k, '')) for k in columns})


def markdown_table(rows):
    gains = any('gain' in r for r in rows)
    head = ['method', 'setting', 'mIoU', 'retained [95% interval]', 'agreement mIoU', 'equal pixels', 'GFLOPs',
            'GFLOPs ratio', 'speed-up'] + (['gain [95% interval]'] if gains else [])
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        interval = '' if r['method'] == 'baseline' or r['retained_ci_low'] != r['retained_ci_low'] else \
            f" [{r['retained_ci_low']:.1f}, {r['retained_ci_high']:.1f}]"
        line = (f"| {r['method']} | {r['setting']} | {r['mIoU']:.2f} | {r['mIoU_retained_pct']:.1f}%{interval} | "
                f"{r['agreement_mIoU']:.2f} | {r['pixel_agreement_pct']:.1f}% | {r['GFLOPs']:.2f} | "
                f"{r['GFLOPs_ratio']:.2f}x | {r['speedup']:.2f}x |")
        if gains:
            gain = ''
            if 'gain' in r:
                gain = f"{r['gain']:+.2f}" + ('' if r['gain_ci_low'] != r['gain_ci_low'] else
                                               f" [{r['gain_ci_low']:+.2f}, {r['gain_ci_high']:+.2f}]")
            line += f' {gain} |'
        out.append(line)
    return '\n'.join(out)


def pareto_front(points):
    """Points (cost, accuracy) not dominated by a cheaper-or-equal, more-accurate one; sorted by cost."""
    front, best = [], float('-inf')
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def lower_plot_limit(values, baseline, keep_share=0.8):
    """Lower y limit of the plot: just below the lowest point that keeps >= ``keep_share`` of the baseline, so that
    one collapsed setting does not squash the region where the methods differ (points below are drawn at the
    limit and labelled). Returns None when every point fits."""
    kept = [v for v in values if v >= keep_share * baseline]
    if not kept or len(kept) == len(values):
        return None
    span = max(kept) - min(kept)
    return min(kept) - max(0.1 * span, 0.5)


def plot_pareto(rows, path, title='', metric='mIoU'):
    """Accuracy vs GFLOPs and vs speed-up. Error bars: the retained-mIoU bootstrap interval, in mIoU units (times
    the baseline's mIoU)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    methods = list(dict.fromkeys(r['method'] for r in rows))
    base = rows[0]['mIoU']   # the baseline row (the metric is stored under 'mIoU' whatever its name)
    floor = lower_plot_limit([r['mIoU'] for r in rows], base)

    def shown(v):
        return v if floor is None else max(v, floor)

    for ax, key, label, cost_of in ((axes[0], 'GFLOPs', 'GFLOPs', lambda r: r['GFLOPs']),
                                    (axes[1], 'speedup', 'speed-up over baseline (x)', lambda r: -r['speedup'])):
        for m in methods:
            pts = sorted((r for r in rows if r['method'] == m), key=lambda r: r[key])
            xs = [r[key] for r in pts]
            ys = [shown(r['mIoU']) for r in pts]
            if m == 'baseline':
                ax.scatter(xs, ys, marker='*', s=160, color='black', label='baseline', zorder=3)
                continue
            line, = ax.plot(xs, ys, marker='o', label=m)
            lows = [r.get('retained_ci_low', float('nan')) for r in pts]
            highs = [r.get('retained_ci_high', float('nan')) for r in pts]
            bars = [(x, r['mIoU'], lo, hi) for x, r, lo, hi in zip(xs, pts, lows, highs)
                    if lo == lo and hi == hi and (floor is None or r['mIoU'] >= floor)]
            if bars:   # drawn as segments: a percentile interval need not contain the point estimate
                bx = [b[0] for b in bars]
                lo, hi = [shown(base * b[2] / 100) for b in bars], [shown(base * b[3] / 100) for b in bars]
                ax.vlines(bx, lo, hi, colors=line.get_color(), lw=1, alpha=0.7)
                ax.scatter(bx + bx, lo + hi, marker='_', s=30, color=line.get_color(), alpha=0.7)
            for x, r in zip(xs, pts):
                if floor is not None and r['mIoU'] < floor:   # off-scale: drawn on the floor, value written
                    ax.scatter([x], [floor], marker='v', s=60, color=line.get_color(), zorder=3)
                    ax.annotate(f"{r['mIoU']:.1f}", (x, floor), textcoords='offset points', xytext=(4, 4),
                                fontsize=7, color=line.get_color())
        front = pareto_front([(cost_of(r), r['mIoU']) for r in rows])
        fx = [c if key == 'GFLOPs' else -c for c, _ in front]
        ax.plot(fx, [shown(a) for _, a in front], ls='--', color='grey', lw=1, label='Pareto front')
        if floor is not None:
            ax.set_ylim(bottom=floor - 0.02 * (base - floor))
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    notes = []
    if any(r.get('retained_ci_low', float('nan')) == r.get('retained_ci_low', float('nan')) for r in rows[1:]):
        notes.append('error bars: 95% bootstrap interval over images')
    if floor is not None:
        notes.append('triangles: off-scale points, their value written')
    fig.suptitle('\n'.join([title, '; '.join(notes)]) if notes else title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    import torch

    from mmtokred.utils import allow_trusted_checkpoints
    allow_trusted_checkpoints()
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    rows, paths = run_sweep(args.config, args.checkpoint, args.spec, args.out_dir, args.shape, args.repeat_times,
                            args.warmup, args.max_images, args.metric, args.cfg_options, not args.no_progress,
                            args.bootstrap, args.verbose, args.methods)
    print(markdown_table(rows))
    print('\n'.join(f'wrote {p}' for p in paths.values()))
    return rows


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))     # one line per error, a missing pretrained wheel included
