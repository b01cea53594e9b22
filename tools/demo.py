"""The README's main command (``make demo``): train-once, reduce-without-retraining, measured on this machine.

1. generates the validation street scenes (deterministic; tools/dataset_converters/make_street_scenes.py);
2. loads the small Segmenter trained once on the generated training scenes (checkpoints/, committed);
3. evaluates it unreduced and with the Token Adapter (configs/demo/): mIoU, the agreement mIoU between the two,
   GFLOPs and the speed ratio (interleaved timing in this process);
4. saves a picture of the removed rows / columns, the token groups and the predictions.

Everything it writes goes to work_dirs/demo. No download, no ../shared needed.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))

CHECKPOINT = osp.join(ROOT, 'checkpoints', 'demo_segmenter_scenes.pth')
BASE = osp.join(ROOT, 'configs', 'demo', 'segmenter_scenes.py')
REDUCED = osp.join(ROOT, 'configs', 'demo', 'segmenter_scenes_tokenadapter.py')


def main(argv=None):
    from mmtokred.utils.cli import add_debug_arg, add_num_threads_arg
    p = argparse.ArgumentParser(description='mmtokred demo')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--repeat-times', type=int, default=30)
    p.add_argument('--no-progress', action='store_true')
    add_num_threads_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)

    import torch
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    progress = not args.no_progress

    import mmtokred  # noqa: F401
    from make_street_scenes import make_street_scenes
    from mmtokred.analysis.evaluate import build_test_loader_and_evaluator, evaluate_segmentor
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import build_model, load_config, tensor_forward
    from mmtokred.analysis.timing import measure_machine_load, report_timing, stage, summarize, time_interleaved
    from visualize_tokens import visualize

    # the validation scenes of the demo model's training run (same seed and stream), not seen in training
    with stage('generating 24 validation street scenes', progress):
        scenes = make_street_scenes(osp.join(args.work_dir, 'scenes'), num_train=96, num_val=24, splits=('val',))
    opts = {'test_dataloader.dataset.data_root': scenes}
    x = torch.randn(1, 3, 240, 320, generator=torch.Generator().manual_seed(0))
    rows, runs, reference = [], {}, None
    for name, config in (('unreduced', BASE), ('Token Adapter', REDUCED)):
        cfg = load_config(config, opts)
        with stage(f'building the {name} model', progress):
            model = build_model(cfg, CHECKPOINT)
            loader, evaluator = build_test_loader_and_evaluator(cfg)
        ev = evaluate_segmentor(model, loader, evaluator, reference, progress=progress)
        reference = reference or ev.preds
        rows.append(dict(name=name, miou=ev.metrics['mIoU'], agreement=ev.agreement,
                         gflops=count_model_macs(model, x, tensor_forward).total() / 1e9))
        runs[name] = (lambda m: lambda: _forward(m, x, tensor_forward))(model)
    with measure_machine_load() as load:
        times = time_interleaved(runs, args.repeat_times, warmup=3, progress=progress)
    base_t = summarize(times['unreduced'])['median']
    print(f'\nValidation street scenes (24 images, 240x320), CPU, {torch.get_num_threads()} threads:')
    print('| model | mIoU | agreement mIoU with unreduced | GFLOPs | median ms | speed-up |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        t = summarize(times[r['name']])['median']
        agree = '-' if r['agreement'] is None else f"{r['agreement']:.2f}"
        print(f"| {r['name']} | {r['miou']:.2f} | {agree} | {r['gflops']:.3f} | {1e3 * t:.1f} | "
              f'{base_t / t:.2f}x |')
    report_timing([dict(name=r['name'], speedup=base_t / summarize(times[r['name']])['median'],
                        flops_ratio=rows[0]['gflops'] / r['gflops'], iqr_pct=summarize(times[r['name']])['iqr_pct'])
                   for r in rows], load, tuple(x.shape[2:]))
    image = osp.join(scenes, 'val', 'scene_0000.png')
    out = visualize(image, REDUCED, CHECKPOINT, osp.join(args.work_dir, 'token_adapter_scene_0000.png'))
    print(f'\nsaved the removed rows/columns, token groups and prediction to {out}')


def _forward(model, x, tensor_forward):
    import torch
    with torch.no_grad():
        tensor_forward(model, x)


if __name__ == '__main__':
    print('mmtokred demo: loading torch and OpenMMLab ...', file=sys.stderr, flush=True)   # ~10 s, silent otherwise
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
