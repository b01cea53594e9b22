"""What a grid reducer decides on real images: which rows / columns it drops, how large its merge groups get, how
far tokens travel when merged and restored. Runs each test image only up to the reduction (the first reduced
layer is never run), so it is cheap.

    python tools/analysis_tools/token_groups.py CONFIG CHECKPOINT [--max-images N] [--num-threads N]
        [--cfg-options model.backbone.reducer.injector=local ...] [--out stats.json]

CONFIG is a reduced config (its backbone holds a Token Adapter). Printed, and written to ``--out``:

* how often each row / column is dropped over the images, and the mean Jaccard overlap of the dropped-row (column)
  sets of two images against that of a random choice of as many lines (1.0: the same lines every time, a fixed
  positional pattern);
* merge groups: the number of tokens per representative (max, 99th percentile), the share of the merged (normal)
  tokens absorbed by the largest 1% of groups (hubs), and how far (Chebyshev distance in tokens) a normal token is
  from the representative it joins;
* restore: how far each position is from the reduced token it takes most of its value from.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


class _Stop(Exception):
    """Raised by the hook once the reduction is captured: the rest of the forward is not needed."""


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_num_threads_arg
    p = argparse.ArgumentParser(description='Row / column and merge-group statistics of a grid reducer')
    p.add_argument('config', help='a reduced config (Token Adapter)')
    p.add_argument('checkpoint', help='checkpoint of the config (trusted file)')
    p.add_argument('--max-images', type=int, help='the first N test images only')
    p.add_argument('--out', help='write the statistics as JSON')
    add_num_threads_arg(p)
    add_cfg_options_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        p.error(f'--max-images must be >= 1, got {args.max_images}')
    return args


def capture_reductions(model, loader):
    """The Reduction of every test image (batch 1), stopping each forward at the reducer."""
    import torch

    from mmtokred import reducers_of
    reducers = reducers_of(model)
    reducer = reducers[0] if reducers else None
    if reducer is None or not reducer.enabled:
        from mmtokred.utils.cli import InputError
        raise InputError('the config has no enabled reducer in model.backbone: give a reduced config')
    captured = []

    def hook(module, inputs, output):
        captured.append(output)
        raise _Stop

    handle = reducer.register_forward_hook(hook)
    try:
        for data in loader:
            with torch.no_grad():
                try:
                    model.test_step(data)
                except _Stop:
                    pass
    finally:
        handle.remove()
    return captured


def mean_jaccard(sets):
    """Mean Jaccard overlap over all pairs of sets (1.0 for fewer than two)."""
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    if not pairs:
        return 1.0
    return sum(len(a & b) / max(1, len(a | b)) for a, b in pairs) / len(pairs)


def line_statistics(kept_lines, n_lines, seed=0):
    """kept_lines: list of kept line indices per image -> drop frequency per line and the Jaccard overlaps."""
    import random
    dropped = [set(range(n_lines)) - set(k) for k in kept_lines]
    freq = [sum(i in d for d in dropped) / len(dropped) for i in range(n_lines)]
    rng = random.Random(seed)
    rand = [set(rng.sample(range(n_lines), len(d))) for d in dropped]
    return dict(drop_frequency=[round(f, 3) for f in freq], jaccard=round(mean_jaccard(dropped), 3),
                jaccard_random=round(mean_jaccard(rand), 3))


def group_statistics(reductions):
    """Merge-group sizes, hub share and travel distances over all images."""
    import torch
    sizes, shares, inject_dist, restore_dist = [], [], [], []
    for red in reductions:
        info = red.info
        H, W = info['grid']
        rows, cols = info['rows'][0], info['cols'][0]
        w_r = cols.numel()
        kept_r = rows[:, None].expand(-1, w_r).reshape(-1)          # original row / column of every reduced token
        kept_c = cols[None, :].expand(rows.numel(), -1).reshape(-1)
        if 'normal_target' in info:
            target, normal = info['normal_target'][0], info['normal_flat'][0]
            size = torch.bincount(target, minlength=kept_r.numel())[info['rep_pos'][0]] + 1
            sizes.append(size.float())
            top = max(1, round(0.01 * size.numel()))
            shares.append(float((size.sort(descending=True).values[:top] - 1).sum()) / max(1, normal.numel()))
            d = torch.maximum((normal // W - kept_r[target]).abs(), (normal % W - kept_c[target]).abs())
            inject_dist.append(d.float())
        src = red.assignment()[0].reshape(-1)                         # (H*W,) main source of every position
        pos = torch.arange(H * W)
        restore_dist.append(torch.maximum((pos // W - kept_r[src]).abs(), (pos % W - kept_c[src]).abs()).float())
    out = {}
    if sizes:
        s = torch.cat(sizes)
        d = torch.cat(inject_dist)
        out.update(group_size_mean=round(float(s.mean()), 2), group_size_p99=round(float(s.quantile(0.99)), 1),
                   group_size_max=int(s.max()), hub_share_top1pct=round(sum(shares) / len(shares), 3),
                   inject_distance_mean=round(float(d.mean()), 2),
                   inject_share_over_3=round(float((d > 3).float().mean()), 3))
    r = torch.cat(restore_dist)
    out.update(restore_distance_mean=round(float(r.mean()), 2),
               restore_share_over_2=round(float((r > 2).float().mean()), 3))
    return out


def main(argv=None):
    import torch

    from mmtokred.analysis.evaluate import build_test_loader_and_evaluator
    from mmtokred.analysis.models import build_model, load_config
    from mmtokred.utils import allow_trusted_checkpoints
    allow_trusted_checkpoints()
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg, args.checkpoint)
    loader, _ = build_test_loader_and_evaluator(cfg, args.max_images)
    reductions = capture_reductions(model, loader)
    from mmtokred import reducers_of
    H, W = reductions[0].info['grid']
    stats = dict(images=len(reductions), grid=[H, W], reducer=repr(reducers_of(model)[0]),
                 rows=line_statistics([r.info['rows'][0].tolist() for r in reductions], H),
                 cols=line_statistics([r.info['cols'][0].tolist() for r in reductions], W),
                 **group_statistics(reductions))
    print(json.dumps(stats, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(stats, f, indent=1)
    return stats


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
