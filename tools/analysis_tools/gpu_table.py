"""The FPS table of BENCHMARKS at the papers' protocols, in one command, as markdown.

    python tools/analysis_tools/gpu_table.py [--out gpu_table.md] [--repeat-times 50] [--warmup 10]
        [--max-batch-size 32] [--compile] [--tiny]

On a CUDA device, fp16 (autocast), every protocol timed in one interleaved run per protocol, batch-1 latency and
the throughput at the saturating batch (doubled from 1 while images/s grow; ``benchmark.py --batch-size auto``):

* Segmenter ViT-L/16 ADE20K, whole model, 640 x 640: baseline, Token Adapter, Expediting, ToMe;
* Mask2Former Swin-L, backbone only, 1152 x 1152 (Expediting's protocol): the COCO panoptic / ADE20K / COCO
  instance settings of Expediting and the Token Adapter;
* MaskDINO Swin-L, whole model (tensor forward, no post-processing), COCO 800 x 1216: Expediting, Token Adapter.

The machine (device name, torch, CUDA), the date and each table's published ratios are written with it.
``--tiny`` runs the same code on the tiny CI configs on the CPU (fp32, 2 runs): the check that keeps this script
from rotting, not a measurement.
"""
import argparse
import os.path as osp
import sys
from datetime import date

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

# (title, baseline, reduced configs, backbone only, shape, published ratios)
PROTOCOLS = [
    ('Segmenter ViT-L/16 ADE20K, whole model, 640 x 640', 'segmenter_vitl_ade',
     ['segmenter_vitl_tokenadapter_ade', 'segmenter_vitl_expedit_ade', 'segmenter_vitl_tome_ade'], False, None,
     'Token Adapter 10.68 -> 15.06 FPS (1.41x, RTX 3090); Expediting 6.55 -> 9.51 FPS (1.45x, V100); batch 1'),
    ('Mask2Former Swin-L, backbone only, 1152 x 1152', 'mask2former_swinl_coco-panoptic',
     ['mask2former_swinl_expedit_coco-panoptic', 'mask2former_swinl_tokenadapter_coco-panoptic',
      'mask2former_swinl_expedit_ade', 'mask2former_swinl_tokenadapter_ade',
      'mask2former_swinl_expedit_coco-instance', 'mask2former_swinl_tokenadapter_coco-instance'], True, (1152, 1152),
     'Expediting: 4.3 -> 5.9 FPS (COCO panoptic), 4.3 -> 6.2 (ADE20K), 4.3 -> 5.4 (instance); V100, batch 1'),
    ('MaskDINO Swin-L COCO, whole model, 800 x 1216', 'maskdino_swinl_coco-panoptic',
     ['maskdino_swinl_expedit_coco-panoptic', 'maskdino_swinl_tokenadapter_coco-panoptic'], False, (800, 1216),
     'Expediting 4.42 -> 5.20 FPS (backbone FLOPs 937 -> 771); Token Adapter 6.11 -> 6.96 FPS (Tab. 2); batch 1'),
]
TINY_PROTOCOLS = [
    ('tiny Segmenter, whole model, 96 x 96', 'tiny/segmenter_tiny_ade', ['tiny/segmenter_tiny_tokenadapter_ade'],
     False, None, '-'),
    ('tiny Mask2Former Swin, backbone only, 64 x 96', 'tiny/mask2former_tiny_coco-panoptic',
     ['tiny/mask2former_tiny_expedit_coco-panoptic'], True, (64, 96), '-'),
]


def parse_args(argv=None):
    from mmtokred.utils.cli import add_debug_arg, positive_int
    p = argparse.ArgumentParser(description="FPS table at the papers' protocols (CUDA, fp16)")
    p.add_argument('--out', default='gpu_table.md', help='markdown file written (default: gpu_table.md)')
    p.add_argument('--repeat-times', type=positive_int, default=50)
    p.add_argument('--warmup', type=positive_int, default=10)
    p.add_argument('--max-batch-size', type=positive_int, default=32)
    p.add_argument('--compile', action='store_true', help='also time every config under torch.compile')
    p.add_argument('--tiny', action='store_true', help='the tiny CI configs on the CPU (checks the script only)')
    add_debug_arg(p)
    return p.parse_args(argv)


def protocol_table(rows, title, published):
    """One protocol's markdown: batch-1 FPS and saturated img/s of every variant, ratios to the baseline."""
    out = [f'### {title}', '', f'Published: {published}', '',
           '| config | mode | GFLOPs | GFLOPs ratio | attention kernel | batch-1 FPS | speed-up | saturating batch '
           '| img/s | speed-up |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        out.append(f"| {r['name']} | {r['mode']} | {r['gflops']:.1f} | {r['flops_ratio']:.2f}x | "
                   f"{r.get('kernels', '-')} | {1e3 / r['median_ms']:.2f} | {r['speedup']:.2f}x | {r['batch']} | "
                   f"{r['fps']:.2f} | {r['throughput_speedup']:.2f}x |")
    return '\n'.join(out)


def main(argv=None):
    import benchmark as bench
    import torch

    from mmtokred.analysis.timing import measure_machine_load
    args = parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        raise RuntimeError('gpu_table.py needs a CUDA device (torch sees none); --tiny runs the CPU check')
    device, precision = ('cpu', 'fp32') if args.tiny else ('cuda', 'fp16')
    repeat, warmup = (2, 0) if args.tiny else (args.repeat_times, args.warmup)
    max_batch = 2 if args.tiny else args.max_batch_size
    lines = [f'## FPS at the papers\' protocols: {bench.machine_name(device)}', '',
             f'torch {torch.__version__}, CUDA {torch.version.cuda}; {precision}; {repeat} interleaved runs after '
             f'{warmup} warm-up per protocol; saturating batch found by doubling up to {max_batch}; '
             f'{date.today().isoformat()}; `python tools/analysis_tools/gpu_table.py{" --tiny" if args.tiny else ""}`']
    for title, base, reduced, backbone_only, shape, published in (TINY_PROTOCOLS if args.tiny else PROTOCOLS):
        configs = [osp.join(ROOT, 'configs', f'{name}.py') for name in [base] + reduced]
        with measure_machine_load() as load:
            rows, _, _ = bench.benchmark(configs, shape, 'auto', repeat, warmup, device=device, progress=False,
                                         backbone_only=backbone_only, precisions=[precision],
                                         compile_backend='inductor' if args.compile else None,
                                         max_batch_size=max_batch)
        lines += ['', protocol_table(rows, title, published), '', f'Machine during the runs: {load.describe()}.']
        lines += [f'* {note}' for note in bench.kernel_notes(rows)]
    text = '\n'.join(lines) + '\n'
    with open(args.out, 'w') as f:
        f.write(text)
    print(text)
    return text


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
