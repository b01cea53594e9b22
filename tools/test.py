"""Test (and evaluate) an mmseg / mmdet model, with mmtokred's reducers registered.

Same arguments as the upstream ``tools/test.py`` of mmseg 1.x / mmdet 3.x:

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] [--show] [--show-dir DIR]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi] [--tta] [--no-strict] [--num-threads N]
        [--verbose] [--debug]
    tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [ARGS]        # torchrun ... --launcher pytorch

Before the Runner starts, the config's reduction settings, the checkpoint file and the test data folders are
checked; an error is one line (``--debug``: the traceback). The checkpoint must fit the model exactly
(``--no-strict``: load the matching weights, as upstream does); a mismatch is reported before mmengine logs its
environment and config. ``--show-dir`` saves every image.

The screen shows a short header (config, checkpoint, dataset size, reduction, the GFLOPs of the first test image),
a progress bar and the metrics; mmengine's full log (environment, config, per-class tables, the evaluators' output)
goes to ``WORK_DIR/TIMESTAMP/TIMESTAMP.log``, and to the screen as well with ``--verbose``. Multi-process runs
(``--launcher pytorch`` under torchrun) use nccl on GPUs, as upstream, and gloo on a CPU-only machine.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

import mmtokred  # noqa: E402,F401  (registers reducers, hosts, datasets)
from mmtokred.hosts.settings import prepare_config  # noqa: E402
from mmtokred.utils import allow_trusted_checkpoints, load_into_runner, run_cli  # noqa: E402
from mmtokred.utils.checkpoint import check_checkpoint_readable  # noqa: E402
from mmtokred.utils.cli import (  # noqa: E402
    add_cfg_options_arg,
    add_debug_arg,
    add_num_threads_arg,
    check_dataset_folders,
    check_file,
    drop_training,
)
from mmtokred.utils.config_checks import check_image_files  # noqa: E402
from mmtokred.utils.dist import check_launcher_env, is_main_process, setup_launcher  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model with token reduction')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (trusted: it is unpickled)')
    parser.add_argument('--work-dir', help='directory for logs and the metric json')
    parser.add_argument('--out', type=str, help='directory (mmseg) or .pkl file (mmdet) for the raw predictions')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted predictions are saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    add_cfg_options_arg(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--no-strict', action='store_true',
                        help='load a checkpoint that does not fit the model exactly (the matching weights only)')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model's test_step (mmengine's compile option: compile=True, or "
                             "compile=dict(backend=..., mode=...) in the config, which this flag keeps)")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_num_threads_arg(parser, 'torch CPU threads per process (default: torch\'s own choice, i.e. every core); on '
                                'a shared machine or with several processes use fewer threads than idle cores')
    parser.add_argument('--verbose', action='store_true',
                        help="show mmengine's full log on screen (it is always written to the work dir)")
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, args):
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError('--show/--show-dir need default_hooks.visualization=dict(type=...VisualizationHook)')
    hooks.visualization['draw'] = True
    if args.show:
        hooks.visualization['show'] = True
        hooks.visualization['wait_time'] = args.wait_time
    if args.show_dir:
        hooks.visualization['interval'] = 1     # upstream draws every 50th image: nothing on a small test set
        if cfg.get('default_scope') == 'mmdet':
            hooks.visualization['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir
            # unnamed: the Runner names it after the run, so an earlier run in this process (its 'visualizer'
            # instance, with its own save_dir) is not reused
            cfg.visualizer.pop('name', None)
    return cfg


def main(argv=None):
    import torch

    from mmtokred.analysis.runner_hooks import progress_and_flops_hook
    from mmtokred.utils.run_output import captured_stdout, describe_reduction, quiet_runner_class

    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    allow_trusted_checkpoints()
    check_file(args.checkpoint, 'checkpoint')
    check_checkpoint_readable(args.checkpoint)
    check_launcher_env(args.launcher)
    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    check_dataset_folders(cfg, ['test_dataloader'])
    check_image_files(cfg, ['test_dataloader'])
    reduction = describe_reduction(cfg)      # before --tta wraps the model
    drop_training(cfg)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = enable_visualization(cfg, args)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ValueError('--tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        if cfg.get('default_scope') == 'mmdet':
            if not args.out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out must be a .pkl file for mmdet configs, got {args.out!r}')
            cfg.test_evaluator = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
        else:
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
            # mmseg's IoUMetric creates it on rank 0 only: another process may write its first image before
            os.makedirs(args.out, exist_ok=True)
    backend = setup_launcher(cfg, args.launcher)
    main_process = is_main_process()
    screen = sys.stdout     # the header and the results; the rest goes to the log (everything with --verbose)
    if main_process:
        print(f'config: {args.config}\ncheckpoint: {args.checkpoint}\nreduction: {reduction}', flush=True)
    if args.compile:
        cfg.compile = cfg.get('compile') or True
    with captured_stdout(enabled=not args.verbose):
        runner = quiet_runner_class(args.verbose).from_cfg(cfg)
        load_into_runner(runner, args.checkpoint, strict=not args.no_strict)
        if cfg.get('compile'):
            # mmengine applies `compile` to train_step only (Runner.train); the same option, for the test loop
            runner._maybe_compile('test_step')
        runner.log_env()
        if main_process:
            print_dataset(cfg, runner, backend, screen)
        runner.register_hook(progress_and_flops_hook(show_progress=not args.verbose, stream=screen), 'VERY_LOW')
        metrics = runner.test()
    if main_process:
        print('results:\n' + format_results(metrics), flush=True)
        print(f'full log: {runner.log_file()}', flush=True)
    return metrics


def print_dataset(cfg, runner, backend, stream):
    dataset = runner.test_dataloader.dataset
    root = cfg.test_dataloader.dataset.get('data_root')
    processes = f', {runner.world_size} processes ({backend})' if runner.world_size > 1 else ''
    print(f'dataset: {len(dataset)} images{f" in {root}" if root else ""}{processes}', file=stream, flush=True)


def format_results(metrics):
    from mmtokred.utils.run_output import format_metrics
    return format_metrics(metrics) or '  (no metrics)'


if __name__ == '__main__':
    sys.exit(run_cli(main))     # one line per error, a missing pretrained wheel included
