"""Count the GFLOPs (MACs, the papers' convention) of a model, per component.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W | --shape S] [--backbone-only] [--cfg-options k=v ...]
        [--debug]

Counts attention (explicit or SDPA), multi-scale deformable attention and every reduction op; see
``mmtokred/analysis/flops.py`` for the formula of each counted op. mmseg and mmdet models alike. The input is one
image of the given shape (default: the config's test crop). Whole model = the tensor forward (backbone, neck,
head; no post-processing). ``--backbone-only`` counts the backbone alone, on 1152 x 1152 unless ``--shape`` is
given: the papers' Swin protocol. Classifier configs (``model = dict(type='TimmVisionTransformer', ...)``,
configs/classification/) count the whole classifier, and a compensator in branch mode
(``--cfg-options compensator.mode=branch``) is counted too (0 when folded).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, add_shape_arg
    p = argparse.ArgumentParser(description='Count GFLOPs (MACs) per component')
    p.add_argument('config')
    add_shape_arg(p)
    p.add_argument('--backbone-only', action='store_true',
                   help='count the backbone alone (default shape 1152 x 1152, the papers\' Swin protocol)')
    add_cfg_options_arg(p)
    add_debug_arg(p)
    return p.parse_args(argv)


def measure(config, shape=None, cfg_options=None, backbone_only=False, progress=False):
    """Returns (shape, counter) for one image."""
    import torch

    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import (
        BACKBONE_PROTOCOL_SHAPE,
        backbone_forward,
        build_model,
        input_shape,
        load_config,
        tensor_forward,
    )
    from mmtokred.analysis.timing import stage
    cfg = load_config(config, cfg_options)
    from mmtokred.compensators import CLASSIFIERS
    if cfg.model.get('type') in CLASSIFIERS:
        hw = input_shape(cfg, shape) if shape else (cfg.data.crop, cfg.data.crop)
        with stage(f'building {osp.basename(config)}', progress):
            model = CLASSIFIERS[cfg.model.type](cfg)
        with stage(f'counting one {hw[0]}x{hw[1]} forward', progress):
            return hw, count_model_macs(model, torch.zeros(1, 3, *hw))
    hw = input_shape(cfg, shape or (BACKBONE_PROTOCOL_SHAPE if backbone_only else None))
    with stage(f'building {osp.basename(config)}', progress):
        model = build_model(cfg)
    x = torch.zeros(1, 3, *hw)
    with stage(f'counting one {hw[0]}x{hw[1]} forward', progress):
        return hw, count_model_macs(model, x, backbone_forward if backbone_only else tensor_forward)


def format_table(counter):
    total = counter.total()
    rows = [('component', 'GFLOPs', 'share')]
    for name, macs in counter.by_phase().items():
        rows.append((name, f'{macs / 1e9:.2f}', f'{100 * macs / total:.1f}%'))
    rows.append(('total', f'{total / 1e9:.2f}', '100.0%'))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [' | '.join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, '-+-'.join('-' * x for x in w))
    lines.insert(-1, '-+-'.join('-' * x for x in w))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    hw, counter = measure(args.config, args.shape, args.cfg_options, args.backbone_only, progress=True)
    what = 'backbone only' if args.backbone_only else 'whole model'
    print(f'{args.config} @ {hw[0]}x{hw[1]}, {what} (GFLOPs = 1e9 multiply-accumulates)')
    print(format_table(counter))
    return counter


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
