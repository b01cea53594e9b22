"""Write a checkpoint of any config's model with random (seeded) weights: a stand-in for trying the tools on a
config whose trained weights you do not have (the tiny CI configs, a new host). The metrics it gives are those of
random weights: a check that everything runs, not a result.

    python tools/model_converters/random_checkpoint.py CONFIG OUT.pth [--seed 0] [--cfg-options k=v ...]

The model is built as the tools build it (no pretrained download: ``init_cfg`` / ``pretrained`` are not applied),
so the checkpoint loads strictly into the same config. Nothing is downloaded.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a clone


def write_random_checkpoint(config: str, out: str, seed: int = 0, cfg_options=None) -> str:
    """Build ``config``'s model with torch seeded by ``seed`` and save ``dict(state_dict, meta)`` to ``out``."""
    import torch

    from mmtokred.analysis.models import build_model, load_config
    cfg = load_config(config, cfg_options)
    torch.manual_seed(seed)
    state = build_model(cfg).state_dict()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(dict(state_dict=state, meta=dict(config=osp.basename(config), seed=seed,
                                                note='random weights (tools/model_converters/random_checkpoint.py)')),
               out)
    return out


def main(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg
    p = argparse.ArgumentParser(description='a checkpoint of any config with random (seeded) weights')
    p.add_argument('config')
    p.add_argument('out', help='checkpoint file to write (.pth)')
    p.add_argument('--seed', type=int, default=0)
    add_cfg_options_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    path = write_random_checkpoint(args.config, args.out, args.seed, args.cfg_options)
    print(f'wrote {path} (random weights, seed {args.seed})')
    return path


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
