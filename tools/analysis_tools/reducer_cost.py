"""Time the reduction ops alone (reduce + restore) on a token grid, without a host model.

    python tools/analysis_tools/reducer_cost.py [--grid 40 40] [--channels 1024] [--restore-dim 150]
        [--repeat-times 5] [--num-threads N]

Rows: Token Adapter (paper setting, and with the options of BENCHMARKS.md section 11), Expediting with the local
clustering at tile 1 (exactly lambda^2 candidates per token), 2 and 4 (default), with the relative temperature, the
dense masked formulation of the reference, ToMe (span), and one of ToMe's sub-block matchings (restoring
``--channels``). Median milliseconds and GMACs of each. ``--restore-dim`` is the channel count restored (150 =
ADE20K logits, 1024 = ViT-L features).
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def dense_masked_clustering(x, h, w, locality, iterations, temperature):
    """The reference's formulation: full N x hw distances every iteration, masked to the local window."""
    import torch
    import torch.nn.functional as F

    from mmtokred.reducers.expediting import initial_cell_labels
    B, H, W, C = x.shape
    rl, cl = initial_cell_labels(H, W, h, w, x.device)
    tr, tc = rl[:, None].expand(H, W).flatten(), cl[None, :].expand(H, W).flatten()
    cr = torch.arange(h, device=x.device)[:, None].expand(h, w).flatten()
    cc = torch.arange(w, device=x.device)[None, :].expand(h, w).flatten()
    r = locality // 2
    mask = ((tr[:, None] - cr[None]).abs() <= r) & ((tc[:, None] - cc[None]).abs() <= r)
    tokens = x.reshape(B, H * W, C)
    centres = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (h, w)).flatten(2).transpose(1, 2)
    for _ in range(iterations):
        d = (tokens * tokens).sum(-1, keepdim=True) + (centres * centres).sum(-1)[:, None] \
            - 2 * tokens @ centres.transpose(1, 2)
        a = (-temperature * d.clamp_min(0)).masked_fill(~mask, float('-inf')).softmax(-1)
        centres = (a.transpose(1, 2) @ tokens) / a.sum(1)[..., None].clamp_min(1e-16)
    return centres


def main(argv=None):
    import torch

    from mmtokred.analysis.flops import MacCounter
    from mmtokred.analysis.timing import measure_machine_load, report_timing
    from mmtokred.reducers import Expediting, TokenAdapter, ToMe
    from mmtokred.utils.cli import add_debug_arg, add_num_threads_arg
    p = argparse.ArgumentParser(description='Time the reduction ops alone')
    p.add_argument('--grid', type=int, nargs=2, default=(40, 40), metavar=('H', 'W'))
    p.add_argument('--channels', type=int, default=1024)
    p.add_argument('--restore-dim', type=int, default=150)
    p.add_argument('--repeat-times', type=int, default=5)
    add_num_threads_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.repeat_times < 1 or min(args.grid) < 2 or args.channels < 1 or args.restore_dim < 1:
        p.error('--repeat-times, --channels and --restore-dim must be >= 1 and --grid at least 2 x 2')
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    H, W = args.grid
    x = torch.randn(1, H, W, args.channels, generator=torch.Generator().manual_seed(0))
    h, w = round(0.7 * H), round(0.7 * W)
    cases = [('Token Adapter r=0.3 (m-threshold)', TokenAdapter(r_h=0.3, r_w=0.3)),
             ('Token Adapter r=0.3, redundancy + LayerNorm + local injector + soft local ejector',
              TokenAdapter(r_h=0.3, r_w=0.3, importance='redundancy', separate_drops=True, match_features='layernorm',
                           injector='local', eject_mode='soft'))]
    for tile in (1, 2, 4):
        cases.append((f'Expediting {h}x{w}, tile {tile}', Expediting(cluster_grid=(h, w), tile=tile)))
    cases.append((f'Expediting {h}x{w}, tile 4, relative temperature',
                  Expediting(cluster_grid=(h, w), temperature=8.0, temperature_mode='relative')))
    cases.append(('ToMe ratio 0.5 (span)', ToMe(ratio=0.5)))
    # one of ToMe's sub-block matchings (28 in segmenter_vitl_tome_ade): the sub-block output it restores has the
    # model's channels
    sub_block = ('ToMe ratio 0.5, one sub-block (restores --channels)', ToMe(ratio=0.5, mode='sub_block'))
    restore_dims = {sub_block[0]: args.channels}
    cases.append(sub_block)

    def run(reducer, restore_dim):
        red = reducer(x)
        red.restore(torch.randn(1, red.tokens.shape[1], restore_dim))

    rows = []
    with measure_machine_load() as load:
        for name, reducer in cases:
            dim = restore_dims.get(name, args.restore_dim)
            rows.append((name, *_measure(lambda: run(reducer, dim), args.repeat_times, MacCounter)))
        rows.append((f'Expediting {h}x{w}, dense masked clustering (reference formulation, clustering only)',
                     *_measure(lambda: dense_masked_clustering(x, h, w, 5, 5, 0.02), args.repeat_times,
                               MacCounter)))
    print(f'{H}x{W} tokens, {args.channels} channels, restore dim {args.restore_dim}')
    print('| reducer | median ms | IQR % | GMACs |\n|---|---|---|---|')
    for name, t, gmacs in rows:
        print(f"| {name} | {1e3 * t['median']:.1f} | {t['iqr_pct']:.1f} | {gmacs:.2f} |")
    report_timing([dict(name=name, iqr_pct=t['iqr_pct']) for name, t, _ in rows], load, (H, W))
    return [(name, 1e3 * t['median'], gmacs) for name, t, gmacs in rows]


def _measure(fn, repeat, counter_cls):
    import torch

    from mmtokred.analysis.timing import summarize
    with torch.no_grad():
        fn()
        with counter_cls() as c:
            fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return summarize(times), c.total() / 1e9


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
