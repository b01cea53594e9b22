"""Model-only throughput, with interleaved comparison of several configs in one process.

    python tools/analysis_tools/benchmark.py CONFIG [--compare CONFIG2 ...] [--shape H W] [--batch-size N]
        [--repeat-times N] [--warmup N] [--fp16 | --bf16] [--device cpu|cuda] [--dataset] [--backbone-only]
        [--num-threads N]
        [--cfg-options ...]

Synthetic input by default (one random batch, the same for every config); ``--dataset`` times ``test_step`` on
the config's test loader, looping it when it is shorter than the run. Every config is built from its own file;
with ``--compare`` the configs are timed round-robin so that a speed ratio stays valid on a noisy machine. The
table gives the median time, the spread (IQR as % of the median), images/s, the speed-up over the first config,
its GFLOPs ratio and the efficiency speed-up / GFLOPs-ratio. ``--phase-repeat N`` also reports the share of the
time spent in the reduction ops themselves (measured in separate, synchronised runs). mmseg and mmdet models alike;
``--backbone-only`` times (and counts) the backbone alone, on 1152 x 1152 unless ``--shape`` is given: the papers'
Swin protocol. The input shape, the CPU used by other processes during the timing, and warnings (loaded machine,
large spread, a speed-up implausible for its GFLOPs ratio) are printed with the table.
"""
import argparse
import os.path as osp
import platform
import sys
from datetime import date

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_num_threads_arg, add_shape_arg
    p = argparse.ArgumentParser(description='Benchmark model-only throughput')
    p.add_argument('config')
    p.add_argument('--compare', nargs='+', default=[], help='more configs, timed interleaved with the first')
    p.add_argument('--checkpoint', help='optional checkpoint (the same for every config)')
    add_shape_arg(p)
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--repeat-times', type=int, default=20, help='timed runs per config')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs per config first')
    prec = p.add_mutually_exclusive_group()
    prec.add_argument('--fp16', action='store_true', help='autocast to float16')
    prec.add_argument('--bf16', action='store_true', help='autocast to bfloat16')
    p.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    p.add_argument('--dataset', action='store_true', help='time test_step on the config test dataloader')
    p.add_argument('--backbone-only', action='store_true',
                   help='time the backbone alone (default shape 1152 x 1152, the papers\' Swin protocol)')
    p.add_argument('--phase-repeat', type=int, default=0, help='runs for the reduction-op time share (0: skip)')
    add_num_threads_arg(p)
    p.add_argument('--no-progress', action='store_true')
    add_cfg_options_arg(p, '; applied to every config')
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.backbone_only and args.dataset:
        p.error('--backbone-only times a synthetic input: it cannot be combined with --dataset')
    for name in ('batch_size', 'repeat_times'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        p.error('--warmup must be >= 0')
    return args


def _cuda():
    import torch
    return torch.cuda.is_available()


def machine_name(device):
    import torch
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads'


def benchmark(configs, shape=None, batch_size=1, repeat=20, warmup=3, dtype=None, device='cpu', dataset=False,
              checkpoint=None, cfg_options=None, phase_repeat=0, progress=True, backbone_only=False):
    """Returns (rows, machine load during the timing, input (H, W)): one row dict per config, the first is the
    reference."""
    import torch

    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import (
        BACKBONE_PROTOCOL_SHAPE,
        backbone_forward,
        build_model,
        config_name,
        input_shape,
        load_config,
        tensor_forward,
    )
    from mmtokred.analysis.timing import (
        autocast_context,
        measure_machine_load,
        summarize,
        time_interleaved,
        time_phases,
    )

    forward = backbone_forward if backbone_only else tensor_forward
    if backbone_only and not shape:
        shape = BACKBONE_PROTOCOL_SHAPE
    runs, macs, models, shapes = {}, {}, {}, []
    gen = torch.Generator().manual_seed(0)
    cfgs = [load_config(config, cfg_options) for config in configs]   # every config checked before any build
    for i, (config, cfg) in enumerate(zip(configs, cfgs)):
        if progress:
            print(f'[{i + 1}/{len(configs)}] building {config_name(config)}', flush=True)
        model = build_model(cfg, checkpoint, device)
        hw = input_shape(cfg, shape)
        shapes.append(hw)
        x = torch.randn(batch_size, 3, *hw, generator=gen).to(device)
        macs[config] = count_model_macs(model, x[:1].cpu() if device == 'cpu' else x[:1], forward).total()
        models[config] = model
        if dataset:
            runs[config] = _dataset_runner(cfg, model, dtype, device)
        else:
            runs[config] = _synthetic_runner(model, x, dtype, device, autocast_context, forward)
    with measure_machine_load() as load:
        times = time_interleaved(runs, repeat, warmup, device, progress)
    base = summarize(times[configs[0]])
    rows = []
    for config in configs:
        s = summarize(times[config])
        speedup = base['median'] / s['median']
        flops_ratio = macs[configs[0]] / macs[config]
        row = dict(config=config, name=config_name(config), gflops=macs[config] / 1e9, median_ms=1e3 * s['median'],
                   iqr_pct=s['iqr_pct'],
                   fps=batch_size / s['median'], speedup=speedup, flops_ratio=flops_ratio,
                   efficiency=speedup / flops_ratio)
        if phase_repeat:
            shares = time_phases(runs[config], phase_repeat, device)
            row['reduction_ms'] = 1e3 * sum(shares.values())
            row['reduction_share_pct'] = 100 * sum(shares.values()) / s['median']
        rows.append(row)
    return rows, load, shapes[0]


def _synthetic_runner(model, x, dtype, device, autocast_context, tensor_forward):
    import torch

    def run():
        with torch.no_grad(), autocast_context(device, dtype):
            tensor_forward(model, x)
    return run


def _dataset_runner(cfg, model, dtype, device):
    import torch
    from mmengine.runner import Runner

    from mmtokred.analysis.timing import autocast_context, cycle_batches
    loader = Runner.build_dataloader(cfg.test_dataloader)
    batches = cycle_batches(loader)

    def run():
        with torch.no_grad(), autocast_context(device, dtype):
            model.test_step(next(batches))
    return run


def format_rows(rows, with_share=False):
    head = ['config', 'GFLOPs', 'median ms', 'IQR %', 'img/s', 'speed-up', 'GFLOPs ratio', 'efficiency']
    if with_share:
        head += ['reduction ops ms', 'reduction ops %']
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [osp.basename(r['config']), f"{r['gflops']:.2f}", f"{r['median_ms']:.1f}", f"{r['iqr_pct']:.1f}",
                 f"{r['fps']:.3f}", f"{r['speedup']:.2f}x", f"{r['flops_ratio']:.2f}x", f"{r['efficiency']:.2f}"]
        if with_share:
            cells += [f"{r.get('reduction_ms', 0):.1f}", f"{r.get('reduction_share_pct', 0):.2f}"]
        out.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(out)


def main(argv=None):
    import torch

    from mmtokred.analysis.timing import report_timing
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else None
    if args.fp16 and str(args.device).startswith('cpu'):
        print('warning: --fp16 on a CPU: most CPU kernels have no float16 path (torch converts back and forth), so '
              'it runs several times slower than fp32; use --bf16 on a CPU with AVX512-BF16 / AMX, or fp32',
              file=sys.stderr, flush=True)
    configs = [args.config] + args.compare
    rows, load, hw = benchmark(configs, args.shape, args.batch_size, args.repeat_times, args.warmup, dtype,
                               args.device, args.dataset, args.checkpoint, args.cfg_options, args.phase_repeat,
                               not args.no_progress, args.backbone_only)
    prec = 'fp16' if args.fp16 else 'bf16' if args.bf16 else 'fp32'
    what = 'backbone only' if args.backbone_only else 'whole model'
    print(f'\n{machine_name(args.device)}; {what}; batch {args.batch_size}; {prec}; '
          f'{args.repeat_times} interleaved runs '
          f'after {args.warmup} warm-up; {date.today().isoformat()}')
    print(format_rows(rows, with_share=bool(args.phase_repeat)))
    report_timing(rows, load, hw)
    return rows


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
