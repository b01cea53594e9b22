"""Train an mmseg / mmdet model with mmtokred registered (upstream ``tools/train.py`` arguments).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

``--resume`` without a path resumes from the latest checkpoint in the work dir, so a run that does not fit in
one sitting continues where it stopped.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmtokred  # noqa: E402,F401
from mmtokred.hosts.settings import prepare_config  # noqa: E402
from mmtokred.utils import allow_trusted_checkpoints, run_cli  # noqa: E402
from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg, check_dataset_folders, check_file  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor / detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the work dir if no path is given')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='mixed precision: float16 with loss scaling on a GPU, bfloat16 autocast on a CPU')
    add_cfg_options_arg(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    from mmengine.runner import Runner

    args = parse_args(argv)
    allow_trusted_checkpoints()
    if args.resume not in (None, 'auto'):
        check_file(args.resume, '--resume checkpoint')
    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    check_file(cfg.get('load_from'), 'load_from')
    check_dataset_folders(cfg, [k for k in ('train_dataloader', 'val_dataloader') if cfg.get(k)])
    if args.amp:
        import torch
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:  # mmengine's AmpOptimWrapper needs an accelerator; bfloat16 autocast needs no loss scaler
            cfg.optim_wrapper.type = 'AutocastOptimWrapper'
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    sys.exit(run_cli(main))
