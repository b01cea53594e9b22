"""Which attention kernel every attention module runs, in a baseline config and its reduced configs, side by side.

    python tools/analysis_tools/kernel_parity.py BASELINE_CONFIG REDUCED_CONFIG [...] [--shape H W] [--backbone-only]
        [--bf16 | --fp16] [--device cpu|cuda]

One synthetic forward per config (``mmtokred.analysis.kernels``). The table has one line per attention module:
the kernel of its calls in every config (``math + weights``: explicit matmul + softmax, returning the attention
weights; ``sdpa:<backend>``: a fused scaled-dot-product kernel). A module whose kernel differs from the
baseline's is a mismatch (exit status 1): the speed-up would then compare two attention implementations. A module
that returns attention weights only in a reduced config (cls-attention importance) is named: it pays for them
alone.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None):
    import torch

    from mmtokred.analysis.kernels import kernel_parity, record_attention_kernels
    from mmtokred.analysis.models import (
        BACKBONE_PROTOCOL_SHAPE,
        backbone_forward,
        build_model,
        config_name,
        input_shape,
        load_config,
        tensor_forward,
    )
    from mmtokred.analysis.timing import autocast_context
    from mmtokred.utils.cli import add_debug_arg, add_shape_arg
    p = argparse.ArgumentParser(description='Attention kernels of a baseline and its reduced configs')
    p.add_argument('configs', nargs='+', help='the baseline config first')
    add_shape_arg(p)
    p.add_argument('--backbone-only', action='store_true', help='run the backbone alone')
    prec = p.add_mutually_exclusive_group()
    prec.add_argument('--fp16', action='store_true')
    prec.add_argument('--bf16', action='store_true')
    p.add_argument('--device', default='cpu')
    add_debug_arg(p)
    args = p.parse_args(argv)
    if len(args.configs) < 2:
        p.error('configs: give the baseline and at least one reduced config')
    dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else None
    forward = backbone_forward if args.backbone_only else tensor_forward
    shape = args.shape or (BACKBONE_PROTOCOL_SHAPE if args.backbone_only else None)
    found = []
    for config in args.configs:
        cfg = load_config(config)
        model = build_model(cfg, device=args.device)
        x = torch.randn(1, 3, *input_shape(cfg, shape), generator=torch.Generator().manual_seed(0)).to(args.device)

        def run(model=model, x=x):
            with autocast_context(args.device, dtype):
                forward(model, x)
        found.append(record_attention_kernels(model, run))
    names = [config_name(c) for c in args.configs]
    modules = sorted(set().union(*found), key=lambda n: [int(t) if t.isdigit() else t for t in n.split('.')])
    print('| attention module | ' + ' | '.join(names) + ' |\n|' + '---|' * (len(names) + 1))
    for module in modules:
        cells = [', '.join(sorted({c.describe() for c in calls.get(module, [])})) or 'not called' for calls in found]
        print(f'| {module} | ' + ' | '.join(cells) + ' |')
    mismatched = False
    for name, calls in zip(names[1:], found[1:]):
        mismatches, payers = kernel_parity(found[0], calls)
        mismatched |= bool(mismatches)
        for line in mismatches:
            print(f'KERNEL MISMATCH {name}: {line}')
        for line in payers:
            print(f'{name}: {line}')
        if not mismatches:
            print(f'{name}: the same attention kernel as {names[0]} in every attention module')
    return 1 if mismatched else 0


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
