"""Count the GFLOPs (MACs, the papers' convention) of a model, per component.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

Counts attention (explicit or SDPA) and every reduction op; see ``mmtokred/analysis/flops.py`` for the formula of
each counted op. The input is one image of the given shape (default: the config's test crop). Classifier configs
(``model = dict(type='TimmVisionTransformer', ...)``, configs/classification/) count the whole classifier, and a
compensator in branch mode (``--cfg-options compensator.mode=branch``) is counted too (0 when folded).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Count GFLOPs (MACs) per component')
    p.add_argument('config')
    p.add_argument('--shape', type=int, nargs='+', help='input H W (or one number for a square input)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def measure(config, shape=None, cfg_options=None):
    """Returns (shape, counter) for one image."""
    import torch

    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import build_model, input_shape, load_config, tensor_forward
    cfg = load_config(config, cfg_options)
    if cfg.model.get('type') == 'TimmVisionTransformer':
        from mmtokred.hosts.timm_vit import build_classifier
        hw = input_shape(cfg, shape) if shape else (cfg.data.crop, cfg.data.crop)
        return hw, count_model_macs(build_classifier(cfg), torch.zeros(1, 3, *hw))
    hw = input_shape(cfg, shape)
    model = build_model(cfg)
    x = torch.zeros(1, 3, *hw)
    return hw, count_model_macs(model, x, tensor_forward)


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
    hw, counter = measure(args.config, args.shape, args.cfg_options)
    print(f'{args.config} @ {hw[0]}x{hw[1]} (GFLOPs = 1e9 multiply-accumulates)')
    print(format_table(counter))
    return counter


if __name__ == '__main__':
    main()
