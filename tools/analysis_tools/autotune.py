"""Pick the token reduction for a model and a GFLOPs budget, without labels, and write its config.

    python tools/analysis_tools/autotune.py CONFIG CHECKPOINT --budget 0.65 [0.5 ...] --images DIR
        [--num-images 32] [--methods TokenAdapter Expediting ToMe ...] [--out-config PATH] [--work-dir DIR]
        [--max-minutes M] [--screen-images N] [--finalists K] [--num-threads N] [--cfg-options ...]

The unreduced model is the teacher: every candidate (method, placement, method parameters, the ratio / grid that
meets the budget on the MAC counter) is scored by its agreement with the unreduced model on the images of DIR
(images only, no annotation is read): agreement mIoU of the segmentation maps (and the mean KL), the backbone's
multi-scale outputs for mmdet Mask2Former / MaskDINO, top-1 agreement for timm classifiers. Prints a ranked
table per budget (score with its 95% interval over images), writes ``autotune.md``, ``autotune.csv`` and
``autotune.png`` (score vs GFLOPs) in --work-dir, and the best reduction of each budget as a config that inherits
CONFIG and states only the reduction (``--out-config``; with several budgets the budget is added to its name),
ready for ``tools/test.py``. --work-dir keeps finished work: the same command resumes. See
:mod:`mmtokred.analysis.autotune` for the search.
"""
import argparse
import csv
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmtokred.analysis.autotune import METHOD_SPACES, SCREEN_IMAGES
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_num_threads_arg, positive_int
    p = argparse.ArgumentParser(description='Label-free choice of a token reduction for a GFLOPs budget')
    p.add_argument('config', help='the model config (any reduction in it is removed for the teacher)')
    p.add_argument('checkpoint', help='its weights (trusted file)')
    p.add_argument('--budget', type=float, nargs='+', default=[],
                   help='target share(s) of the unreduced GFLOPs, in (0, 1]')
    p.add_argument('--images', required=True, help='folder of calibration images (images only)')
    p.add_argument('--num-images', type=positive_int, default=32, help='N images spread evenly over the sorted names')
    p.add_argument('--methods', nargs='+', help=f'default: every method the host runs ({" ".join(METHOD_SPACES)})')
    p.add_argument('--out-config', help='the chosen config (default: WORK_DIR/autotune_budget<B>.py)')
    p.add_argument('--work-dir', default='work_dirs/autotune', help='outputs and resumable state')
    p.add_argument('--max-minutes', type=float, help='stop scoring after M minutes, report the best found')
    p.add_argument('--screen-images', type=positive_int, default=SCREEN_IMAGES,
                   help='every candidate is first scored on this many images (default %(default)s)')
    p.add_argument('--finalists', type=positive_int,
                   help='per budget, successive halving (double the images, keep the better half) down to this many '
                   'candidates, extended to all images (default: the best quarter of the screened, at least 4, '
                   'extended at once); for slow models, e.g. --screen-images 2 --finalists 3')
    p.add_argument('--score-spec', help='instead of searching: score every point of this sweep spec '
                   '(configs/sweeps/, see sweep.py) on the images, to check the proxy against a labelled sweep')
    p.add_argument('--compare-csv', help='with --score-spec: a sweep.csv of the same spec; prints the rank '
                   'correlation between the score and its mIoU')
    p.add_argument('--no-progress', action='store_true')
    add_num_threads_arg(p)
    add_cfg_options_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if not args.budget and not args.score_spec:
        p.error('--budget is required (one or more shares of the unreduced GFLOPs, in (0, 1])')
    for b in args.budget:
        if not 0 < b <= 1:
            p.error(f'--budget must be in (0, 1] (a share of the unreduced GFLOPs), got {b:g}')
    if args.max_minutes is not None and args.max_minutes <= 0:
        p.error(f'--max-minutes must be > 0, got {args.max_minutes:g}')
    return args


def out_config_path(args, budget):
    if args.out_config is None:
        return osp.join(args.work_dir, f'autotune_budget{budget:g}.py')
    if len(args.budget) == 1:
        return args.out_config
    root, ext = osp.splitext(args.out_config)
    return f'{root}_budget{budget:g}{ext or ".py"}'


def write_csv(rows_by_budget, path):
    columns = ['budget', 'rank', 'method', 'setting', 'GFLOPs', 'GFLOPs_share', 'score', 'low', 'high', 'plain',
               'kl', 'images']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for b, rows in rows_by_budget.items():
            for i, r in enumerate(rows):
                w.writerow(dict({k: (f'{r[k]:.4f}' if isinstance(r[k], float) else r[k]) for k in columns[2:]},
                                budget=b, rank=i + 1))


def score_spec(tuner, cfg, args):
    """--score-spec: the proxy score of every point of a hand-made sweep, and its rank correlation with the
    sweep's labelled mIoU (--compare-csv)."""
    from mmengine.config import Config

    from mmtokred.analysis.autotune import spearman
    from mmtokred.utils.cli import InputError, check_file
    check_file(args.score_spec, '--score-spec')
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from sweep import expand_points
    points = expand_points(tuner.host.teacher_cfg(), Config.fromfile(args.score_spec))[1:]
    labelled = {}
    if args.compare_csv:
        check_file(args.compare_csv, '--compare-csv')
        with open(args.compare_csv) as f:
            labelled = {(r['method'], r['setting']): float(r['mIoU']) for r in csv.DictReader(f)}
        missing = [f'{m} {s}' for m, s, _ in points if (m, s) not in labelled]
        if missing:
            raise InputError(f'--compare-csv {args.compare_csv} lacks {len(missing)} point(s) of the spec, e.g. '
                             f'{missing[0]!r}')
    tuner.prepare(search=False)
    tuner.teacher_outputs()
    rows = tuner.score_configs(points)
    os.makedirs(args.work_dir, exist_ok=True)
    path = osp.join(args.work_dir, 'proxy_scores.csv')
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['method', 'setting', 'GFLOPs', 'score', 'low', 'high', 'plain', 'kl'] +
                   (['mIoU'] if labelled else []))
        for r in rows:
            w.writerow([r['method'], r['setting'], f"{r['GFLOPs']:.4f}", f"{r['score']:.3f}", f"{r['low']:.3f}",
                        f"{r['high']:.3f}", f"{r['plain']:.3f}", f"{r['kl']:.5f}"] +
                       ([labelled[(r['method'], r['setting'])]] if labelled else []))
    for r in rows:
        print(f"{r['method']} | {r['setting']} | {r['GFLOPs']:.2f} GFLOPs | score {r['score']:.2f} "
              f"[{r['low']:.2f}, {r['high']:.2f}] | plain {r['plain']:.2f} | KL {r['kl']:.4f}"
              + (f" | mIoU {labelled[(r['method'], r['setting'])]:.2f}" if labelled else ''))
    if labelled:
        miou = [labelled[(r['method'], r['setting'])] for r in rows]
        rho = spearman([r['score'] for r in rows], miou)
        rho_kl = spearman([-r['kl'] for r in rows], miou)
        rho_plain = spearman([r['plain'] for r in rows], miou)
        print(f'rank correlation (Spearman) with the labelled mIoU over {len(rows)} settings: score {rho:.3f}, '
              f'plain agreement {rho_plain:.3f}, -KL {rho_kl:.3f}')
    print(f'wrote {path}')
    return rows


def main(argv=None):
    import torch

    from mmtokred.analysis.autotune import Autotuner, list_images, markdown_table, plot_scores, table_rows, write_config
    from mmtokred.analysis.models import load_config
    from mmtokred.utils import allow_trusted_checkpoints
    from mmtokred.utils.cli import check_file
    allow_trusted_checkpoints()
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    start = time.time()
    check_file(args.checkpoint, 'checkpoint')
    cfg = load_config(args.config, args.cfg_options)
    images = list_images(args.images, args.num_images)
    tuner = Autotuner(cfg, args.checkpoint, images, args.budget, args.methods, args.work_dir, args.max_minutes,
                      not args.no_progress, screen_images=args.screen_images, finalists=args.finalists)
    if args.score_spec:
        return score_spec(tuner, cfg, args)
    tuner.prepare()
    print(f'{len(tuner.candidates)} candidates for budget(s) {" ".join(f"{b:g}" for b in tuner.budgets)} '
          f'(unreduced: {tuner.base_macs / 1e9:.3f} GFLOPs), {len(images)} images; setup '
          f'{time.time() - start:.0f} s', flush=True)
    rankings = tuner.run()
    rows_by_budget = {b: table_rows(tuner, ranking) for b, ranking in rankings.items()}
    os.makedirs(args.work_dir, exist_ok=True)
    tables, chosen = [], {}
    for b, rows in rows_by_budget.items():
        tables.append(markdown_table(tuner, rows, b))
        if rows:
            best = rows[0]
            chosen[b] = write_config(tuner, best['candidate'], args.config, out_config_path(args, b), best['score'])
    text = '\n\n'.join(tables)
    print(text)
    with open(osp.join(args.work_dir, 'autotune.md'), 'w') as f:
        f.write(text + '\n')
    write_csv(rows_by_budget, osp.join(args.work_dir, 'autotune.csv'))
    plot_scores(tuner, rows_by_budget, osp.join(args.work_dir, 'autotune.png'))
    for b, rows in rows_by_budget.items():
        if b not in chosen:
            print(f'budget {b:g}: no candidate was scored (--max-minutes); run again with the same --work-dir to '
                  'resume')
            continue
        best = rows[0]
        print(f'budget {b:g}: {best["setting"]} ({best["GFLOPs"]:.3f} GFLOPs, score {best["score"]:.2f}) -> '
              f'{chosen[b]}')
    print(f'total time {(time.time() - start) / 60:.1f} min' + (' (stopped at --max-minutes)' if tuner.stopped
                                                                else ''))
    return tuner, rows_by_budget, chosen


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
