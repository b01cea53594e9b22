"""A first smoke test in one command (``make quickstart``; CI runs it too), as a user would run the tools on a real
model, in two parts:

1. semantic segmentation (mmseg): a tiny ADE20K-format dataset and a checkpoint of the tiny 4-layer Segmenter,
   then ``tools/test.py`` with the Token Adapter on it: mIoU;
2. panoptic segmentation (mmdet): a tiny COCO-format dataset (panoptic PNGs + JSON, instance JSON) and a checkpoint
   of the tiny Mask2Former (Swin) made by ``tools/model_converters/random_checkpoint.py``, then ``tools/test.py``
   with the Token Adapter per window: PQ and box / mask AP. The data is found through
   ``--cfg-options test_dataloader.dataset.data_root=DIR``, which moves the evaluators' annotation paths too.

Every checkpoint holds random (seeded) weights: the metrics check that everything runs, they are not results. Takes
well under a minute on a laptop CPU. Everything it writes goes to the work dir. No download.

    python tools/quickstart.py [--work-dir work_dirs/quickstart] [--only seg|panoptic] [--num-threads N]
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

BASE = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')
REDUCED = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')
PANOPTIC = osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_tokenadapter_coco-panoptic.py')


def make_tiny_checkpoint(path: str, seed: int = 0) -> str:
    """The tiny Segmenter's weights (random, seeded) saved as a plain state dict."""
    return load_tool('model_converters/random_checkpoint').write_random_checkpoint(BASE, path, seed)


def run_test(argv, metric_names):
    print('running: python tools/test.py ' + ' '.join(osp.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv),
          flush=True)
    metrics = load_tool('test').main(argv)
    return {name: metrics[key] for name, key in metric_names.items()}


def main(argv=None):
    from mmtokred.utils.cli import add_debug_arg, add_num_threads_arg
    p = argparse.ArgumentParser(description='mmtokred quick start: tiny data + tiny checkpoints + tools/test.py')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'quickstart'))
    p.add_argument('--only', choices=['seg', 'panoptic'], help='run one part only (default: both)')
    add_num_threads_arg(p, 'torch CPU threads (default: torch\'s own choice)')
    add_debug_arg(p)
    args = p.parse_args(argv)
    threads = ['--num-threads', str(args.num_threads)] if args.num_threads else []

    from mmtokred.analysis.timing import stage
    results = {}
    if args.only in (None, 'seg'):
        from make_tiny_data import make_tiny_ade
        with stage('making 3 tiny ADE20K-format images and a tiny Segmenter checkpoint'):
            data = make_tiny_ade(osp.join(args.work_dir, 'tiny_ade'), num=3, size=(128, 96))
            ckpt = make_tiny_checkpoint(osp.join(args.work_dir, 'tiny_segmenter.pth'))
        results['seg'] = run_test([REDUCED, ckpt, '--work-dir', args.work_dir, *threads, '--cfg-options',
                                   f'test_dataloader.dataset.data_root={data}'], {'mIoU': 'mIoU'})
    if args.only in (None, 'panoptic'):
        from make_tiny_coco import make_tiny_coco
        with stage('making 3 tiny COCO panoptic / instance images and a tiny Mask2Former checkpoint'):
            data = make_tiny_coco(osp.join(args.work_dir, 'tiny_coco'), num=3)
            ckpt = load_tool('model_converters/random_checkpoint').write_random_checkpoint(
                PANOPTIC, osp.join(args.work_dir, 'tiny_mask2former_coco-panoptic.pth'))
        results['panoptic'] = run_test(
            [PANOPTIC, ckpt, '--work-dir', osp.join(args.work_dir, 'panoptic'), *threads, '--cfg-options',
             f'test_dataloader.dataset.data_root={data}'],
            {'PQ': 'coco_panoptic/PQ', 'box AP': 'coco/bbox_mAP', 'mask AP': 'coco/segm_mAP'})
    summary = '; '.join(f'{part}: ' + ', '.join(f'{k} {v:.2f}' for k, v in values.items())
                        for part, values in results.items())
    print(f'\nquick start passed: tools/test.py ran the tiny Token Adapter configs ({summary}) with random weights '
          f'(outputs in {args.work_dir})')
    return results


def load_tool(name):
    """tools/<name>.py as a module (tools/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'mmtokred_tool_{name.replace("/", "_")}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
