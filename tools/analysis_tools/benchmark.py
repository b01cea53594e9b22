"""Batch-1 latency and saturated throughput, with interleaved comparison of several configs in one process.

    python tools/analysis_tools/benchmark.py CONFIG [--compare CONFIG2 ...] [--shape H W] [--batch-size N|auto]
        [--repeat-times N] [--warmup N] [--fp16 | --bf16 | --dtypes fp32 bf16 ...] [--compile] [--device cpu|cuda]
        [--dataset] [--backbone-only] [--num-threads N] [--phase-repeat N] [--cfg-options ...]

Synthetic input by default (one random batch, the same for every config); ``--dataset`` times ``test_step`` on
the config's test loader, looping it when it is shorter than the run. Every config is built from its own file;
every variant (config x precision x eager / compiled) is timed round-robin with the others, so that a speed ratio
stays valid on a noisy machine. For each variant the table gives the batch-1 latency (median, spread as IQR % of
the median), the throughput at ``--batch-size`` (``auto``: doubled from 1 while images/s grow by more than 5%, up
to ``--max-batch-size``; each variant finds its own), the speed-ups over the first config in the same precision
and mode, its GFLOPs ratio and the efficiency speed-up / GFLOPs ratio, and the attention kernel every attention
call ran (``mmtokred.analysis.kernels``; the kernel parity with the first config is checked and printed).
``--compile`` adds a ``torch.compile``d twin of every variant (``--compile-backend``, inductor by default) and the
graph-break count dynamo finds in it. ``--phase-repeat N`` also reports the share of the time spent in the
reduction ops themselves (eager, batch 1, measured in separate, synchronised runs). mmseg and mmdet models alike;
``--backbone-only`` times (and counts) the backbone alone, on 1152 x 1152 unless ``--shape`` is given: the papers'
Swin protocol. The input shape, the CPU used by other processes during the timing, and warnings (loaded machine,
large spread, a speed-up implausible for its GFLOPs ratio, kernel mismatches) are printed with the table.
"""
import argparse
import functools
import os.path as osp
import platform
import sys
from datetime import date

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


PRECISIONS = ('fp32', 'bf16', 'fp16')
SATURATION_GAIN = 1.05      # --batch-size auto: double the batch while images/s grow by more than 5%


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_num_threads_arg, add_shape_arg
    p = argparse.ArgumentParser(description='Benchmark batch-1 latency and saturated throughput')
    p.add_argument('config')
    p.add_argument('--compare', nargs='+', default=[], help='more configs, timed interleaved with the first')
    p.add_argument('--checkpoint', help='optional checkpoint (the same for every config)')
    add_shape_arg(p)
    p.add_argument('--batch-size', default='1',
                   help='throughput batch size, or "auto": doubled while images/s grow (latency is always batch 1)')
    p.add_argument('--max-batch-size', type=int, default=64, help='upper bound of --batch-size auto')
    p.add_argument('--repeat-times', type=int, default=20, help='timed runs per variant')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs per variant first')
    prec = p.add_mutually_exclusive_group()
    prec.add_argument('--fp16', action='store_true', help='autocast to float16')
    prec.add_argument('--bf16', action='store_true', help='autocast to bfloat16')
    prec.add_argument('--dtypes', nargs='+', choices=PRECISIONS, help='several precisions in one interleaved run')
    p.add_argument('--compile', action='store_true', help='also time every variant under torch.compile')
    p.add_argument('--compile-backend', default='inductor', help='torch.compile backend (default: inductor)')
    p.add_argument('--no-kernels', action='store_true', help='skip recording the attention kernels (one forward)')
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
    if args.batch_size != 'auto':
        try:
            args.batch_size = int(args.batch_size)
        except ValueError:
            p.error(f'--batch-size must be an integer >= 1 or "auto", got {args.batch_size!r}')
    if args.dataset and (args.compile or args.batch_size == 'auto'):
        p.error('--compile and --batch-size auto time a synthetic input: they cannot be combined with --dataset')
    for name in ('batch_size', 'repeat_times', 'max_batch_size'):
        value = getattr(args, name)
        if value != 'auto' and value < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        p.error('--warmup must be >= 0')
    args.dtypes = args.dtypes or ['fp16' if args.fp16 else 'bf16' if args.bf16 else 'fp32']
    return args


def _cuda():
    import torch
    return torch.cuda.is_available()


def machine_name(device):
    import torch
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads'


def _torch_dtype(precision):
    import torch
    return dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[precision]


def benchmark(configs, shape=None, batch_size=1, repeat=20, warmup=3, dtype=None, device='cpu', dataset=False,
              checkpoint=None, cfg_options=None, phase_repeat=0, progress=True, backbone_only=False,
              precisions=None, compile_backend=None, kernels=True, max_batch_size=64):
    """Returns (rows, machine load during the timing, input (H, W)): one row dict per variant (config x precision x
    eager / compiled); the first config is the reference of its precision and mode. ``precisions`` (names in
    ``PRECISIONS``) overrides ``dtype``; ``compile_backend`` adds compiled variants; ``batch_size`` may be
    ``'auto'``."""
    import torch

    from mmtokred.analysis.compiled import compile_cache, compile_forward, count_graph_breaks
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.kernels import record_attention_kernels
    from mmtokred.analysis.models import (
        BACKBONE_PROTOCOL_SHAPE,
        backbone_forward,
        build_model,
        config_name,
        input_shape,
        load_config,
        tensor_forward,
    )
    from mmtokred.analysis.timing import autocast_context, measure_machine_load, time_interleaved, time_phases

    forward = backbone_forward if backbone_only else tensor_forward
    if backbone_only and not shape:
        shape = BACKBONE_PROTOCOL_SHAPE
    if precisions is None:
        precisions = [{None: 'fp32', torch.float32: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[dtype]]
    modes = ['eager'] + (['compiled'] if compile_backend else [])
    variants, macs, shapes = [], {}, []
    gen = torch.Generator().manual_seed(0)
    cfgs = [load_config(config, cfg_options) for config in configs]   # every config checked before any build
    for i, (config, cfg) in enumerate(zip(configs, cfgs)):
        if progress:
            print(f'[{i + 1}/{len(configs)}] building {config_name(config)}', flush=True)
        model = build_model(cfg, checkpoint, device)
        hw = input_shape(cfg, shape)
        shapes.append(hw)
        x = torch.randn(1, 3, *hw, generator=gen).to(device)
        macs[config] = count_model_macs(model, x.cpu() if device == 'cpu' else x, forward).total()
        for precision in precisions:
            for mode in modes:
                fn = compile_forward(model, forward, compile_backend) if mode == 'compiled' else \
                    functools.partial(forward, model)
                v = dict(config=config, name=config_name(config), precision=precision, mode=mode, model=model,
                         key=f'{config_name(config)} {precision} {mode}', hw=hw)
                dt = _torch_dtype(precision)
                if dataset:
                    v['run'] = _dataset_runner(cfg, model, dt, device)
                else:
                    v['make_run'] = functools.partial(_synthetic_runner, fn, dt, device, autocast_context, hw, gen)
                    v['run'] = v['make_run'](1)
                if kernels and mode == 'eager':
                    v['kernels'] = record_attention_kernels(model, v['run'])
                v['explain'] = functools.partial(_autocast_call, forward, model, dt, device, autocast_context, x)
                variants.append(v)
    # compiled variants share the code objects of the forward: room for one graph per variant and batch size
    with measure_machine_load() as load, compile_cache(64 * len(variants)):
        latency = time_interleaved({v['key']: v['run'] for v in variants}, repeat, warmup, device, progress)
        if dataset or batch_size == 1:
            throughput, batches = latency, {v['key']: 1 for v in variants}
        else:
            batches = {v['key']: (batch_size if batch_size != 'auto' else
                                  _saturating_batch(v['make_run'], max_batch_size, device, progress))
                       for v in variants}
            throughput = time_interleaved({v['key']: v['make_run'](batches[v['key']]) for v in variants}, repeat,
                                          warmup, device, progress)
    for v in variants:      # after the timing: dynamo.explain resets the compiled caches
        if v['mode'] == 'compiled':
            v['graph_breaks'] = count_graph_breaks(v['explain'])
    rows = _rows(variants, latency, throughput, batches, macs, batch_size if dataset else None)
    if phase_repeat:
        for v, row in zip(variants, rows):
            if v['mode'] == 'eager':
                shares = time_phases(v['run'], phase_repeat, device)
                row['reduction_ms'] = 1e3 * sum(shares.values())
                row['reduction_share_pct'] = 100 * sum(shares.values()) / (row['median_ms'] / 1e3)
    return rows, load, shapes[0]


def _rows(variants, latency, throughput, batches, macs, dataset_batch):
    from mmtokred.analysis.kernels import kernel_parity, summarize_kernels
    from mmtokred.analysis.timing import summarize
    refs, rows = {}, []
    for v in variants:
        lat, thr = summarize(latency[v['key']]), summarize(throughput[v['key']])
        batch = batches[v['key']] if dataset_batch is None else dataset_batch
        row = dict(config=v['config'], name=v['name'], precision=v['precision'], mode=v['mode'],
                   gflops=macs[v['config']] / 1e9, median_ms=1e3 * lat['median'], iqr_pct=lat['iqr_pct'],
                   batch=batch, fps=batch / thr['median'], throughput_iqr_pct=thr['iqr_pct'])
        ref = refs.setdefault((v['precision'], v['mode']), (row, v))
        ref_row, ref_v = ref
        row['flops_ratio'] = ref_row['gflops'] / row['gflops']
        row['speedup'] = ref_row['median_ms'] / row['median_ms']
        row['throughput_speedup'] = row['fps'] / ref_row['fps']
        row['efficiency'] = row['speedup'] / row['flops_ratio']
        row['throughput_efficiency'] = row['throughput_speedup'] / row['flops_ratio']
        eager = next((u for u in variants if u['key'] == v['key'].replace(' compiled', ' eager')), v)
        if 'kernels' in eager:
            row['kernels'] = summarize_kernels(eager['kernels'])
            ref_eager = next(u for u in variants if u['key'] == ref_v['key'].replace(' compiled', ' eager'))
            row['kernel_mismatches'], row['weight_payers'] = kernel_parity(ref_eager['kernels'], eager['kernels'])
        if 'graph_breaks' in v:
            row['graph_breaks'] = v['graph_breaks'].breaks
            row['graph_break_reasons'] = v['graph_breaks'].reasons
        rows.append(row)
    return rows


def _autocast_call(forward, model, dtype, device, autocast_context, inputs):
    with autocast_context(device, dtype):
        return forward(model, inputs)


def _synthetic_runner(fn, dtype, device, autocast_context, hw, gen, batch):
    import torch
    x = torch.randn(batch, 3, *hw, generator=gen).to(device)

    def run():
        with torch.no_grad(), autocast_context(device, dtype):
            fn(x)
    return run


def _saturating_batch(make_run, max_batch_size, device, progress):
    """Double the batch from 1 while images/s grow by more than ``SATURATION_GAIN`` (2 timed runs after 1 warm-up
    per size); returns the best batch size."""
    from mmtokred.analysis.timing import time_interleaved
    best, best_fps, batch = 1, 0.0, 1
    while batch <= max_batch_size:
        try:
            seconds = min(time_interleaved({'probe': make_run(batch)}, 2, 1, device, False)['probe'])
        except RuntimeError as e:      # out of memory: the previous size is the saturating one
            if 'out of memory' not in str(e):
                raise
            break
        fps = batch / seconds
        if progress:
            print(f'  batch {batch}: {fps:.3f} img/s', flush=True)
        if fps < SATURATION_GAIN * best_fps:
            break
        if fps > best_fps:
            best, best_fps = batch, fps
        batch *= 2
    return best


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
    """The markdown table: one line per variant."""
    with_breaks = any('graph_breaks' in r for r in rows)
    head = ['config', 'precision', 'mode', 'GFLOPs', 'attention kernel', 'latency ms (batch 1)', 'IQR %', 'speed-up',
            'batch', 'img/s', 'throughput speed-up', 'GFLOPs ratio', 'efficiency (latency / throughput)']
    head += ['graph breaks'] if with_breaks else []
    head += ['reduction ops ms', 'reduction ops %'] if with_share else []
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [osp.basename(r['config']), r.get('precision', 'fp32'), r.get('mode', 'eager'), f"{r['gflops']:.2f}",
                 r.get('kernels', '-'), f"{r['median_ms']:.1f}", f"{r['iqr_pct']:.1f}", f"{r['speedup']:.2f}x",
                 str(r.get('batch', 1)), f"{r['fps']:.3f}", f"{r.get('throughput_speedup', r['speedup']):.2f}x",
                 f"{r['flops_ratio']:.2f}x",
                 f"{r['efficiency']:.2f} / {r.get('throughput_efficiency', r['efficiency']):.2f}"]
        cells += [str(r['graph_breaks']) if 'graph_breaks' in r else '-'] if with_breaks else []
        if with_share:
            cells += ([f"{r['reduction_ms']:.1f}", f"{r['reduction_share_pct']:.2f}"] if 'reduction_ms' in r
                      else ['-', '-'])
        out.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(out)


def kernel_notes(rows):
    """Kernel-parity lines: mismatches with the reference config, blocks paying for attention weights alone."""
    out = []
    for r in rows:
        if r.get('mode', 'eager') != 'eager' or 'kernel_mismatches' not in r:
            continue
        for line in r['kernel_mismatches']:
            out.append(f"KERNEL MISMATCH {r['name']} ({r['precision']}): {line}")
        for line in r['weight_payers']:
            out.append(f"{r['name']} ({r['precision']}): {line}")
    checked = [r for r in rows if 'kernel_mismatches' in r]
    if checked and not any(r['kernel_mismatches'] for r in checked):
        out.insert(0, 'kernel parity: every attention module runs the same kernel as in the reference config')
    return out


def main(argv=None):
    import torch

    from mmtokred.analysis.timing import report_timing
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if 'fp16' in args.dtypes and str(args.device).startswith('cpu'):
        print('warning: --fp16 on a CPU: most CPU kernels have no float16 path (torch converts back and forth), so '
              'it runs several times slower than fp32; use --bf16 on a CPU with AVX512-BF16 / AMX, or fp32',
              file=sys.stderr, flush=True)
    configs = [args.config] + args.compare
    rows, load, hw = benchmark(configs, args.shape, args.batch_size, args.repeat_times, args.warmup, None,
                               args.device, args.dataset, args.checkpoint, args.cfg_options, args.phase_repeat,
                               not args.no_progress, args.backbone_only, precisions=args.dtypes,
                               compile_backend=args.compile_backend if args.compile else None,
                               kernels=not args.no_kernels, max_batch_size=args.max_batch_size)
    what = 'backbone only' if args.backbone_only else 'whole model'
    print(f'\n{machine_name(args.device)}; {what}; latency at batch 1, throughput at batch {args.batch_size}; '
          f'{" / ".join(args.dtypes)}; {args.repeat_times} interleaved runs after {args.warmup} warm-up; '
          f'{date.today().isoformat()}')
    print(format_rows(rows, with_share=bool(args.phase_repeat)))
    for line in kernel_notes(rows):
        print(line)
    for r in rows:
        for reason in r.get('graph_break_reasons', []):
            print(f"graph break in {r['name']} ({r['precision']}): {reason}")
    report_timing(rows, load, hw)
    return rows


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
