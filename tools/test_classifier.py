"""Evaluate a timm ViT classifier (DeiT / ViT), with token reduction and a compensator, on an ImageNet-format
folder (one sub-folder per class, sorted names = class indices, as torchvision's ImageFolder).

    python tools/test_classifier.py CONFIG CHECKPOINT --data-root DIR [--batch-size N] [--max-images N]
        [--amp] [--cfg-options k=v ...]

CONFIG: ``model = dict(type='TimmVisionTransformer', name=..., **timm kwargs)``, ``data = dict(resize, crop,
mean, std)`` (0-255 units), optional ``reduction`` (e.g. ``dict(reducer=dict(type='ToMe', mode='layer', r=8))``)
and ``compensator`` (``dict(checkpoint=FILE, source=0, mode='fold')``): see configs/classification/. Prints top-1
(and top-5) accuracy in %; ``--cfg-options`` changes any of them (``reduction.reducer.r=16``).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Top-1 of a (reduced, compensated) ViT classifier')
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='weights (trusted file); omit only for smoke tests')
    p.add_argument('--data-root', required=True, help='ImageNet-format folder: one sub-folder per class')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--max-images', type=int)
    p.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.max_images is not None and args.max_images < 1:
        p.error(f'--max-images must be >= 1, got {args.max_images}')
    return args


def image_folder(root):
    """[(path, class index)] and the class names of an ImageNet-format folder."""
    from mmtokred.compensators.distill import IMAGE_EXTENSIONS
    if not osp.isdir(root):
        raise FileNotFoundError(f'--data-root {root!r} does not exist')
    classes = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
    if not classes:
        raise ValueError(f'--data-root {root!r} has no class sub-folders')
    samples = [(osp.join(dirpath, f), i) for i, c in enumerate(classes)
               for dirpath, _, files in sorted(os.walk(osp.join(root, c))) for f in sorted(files)
               if f.lower().endswith(IMAGE_EXTENSIONS)]
    return samples, classes


def preprocess(path, data):
    """Resize the short side to ``data.resize`` (bicubic), centre-crop ``data.crop``, normalise: (3, crop, crop)."""
    import numpy as np
    import torch
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert('RGB')
        w, h = im.size
        s = data['resize'] / min(w, h)
        im = im.resize((max(round(w * s), data['crop']), max(round(h * s), data['crop'])), Image.BICUBIC)
        w, h = im.size
        left, top = (w - data['crop']) // 2, (h - data['crop']) // 2
        arr = np.asarray(im.crop((left, top, left + data['crop'], top + data['crop'])), dtype=np.float32)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    mean = torch.tensor(data['mean']).view(3, 1, 1)
    std = torch.tensor(data['std']).view(3, 1, 1)
    return (x - mean) / std


def evaluate(model, samples, data, batch_size=16, amp=False, progress=True):
    """Top-1 / top-5 accuracy (%) over ``samples``."""
    import torch

    from mmtokred.analysis.timing import progress_bar
    from mmtokred.compensators.distill import autocast
    correct1 = correct5 = 0
    bar = progress_bar(len(samples), progress, 'evaluating', 'img')
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            x = torch.stack([preprocess(p, data) for p, _ in chunk])
            y = torch.tensor([c for _, c in chunk])
            with autocast(amp, model):
                logits = model(x).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(1).sum())
            bar.update(len(chunk))
    bar.close()
    n = max(len(samples), 1)
    return dict(top1=100 * correct1 / n, top5=100 * correct5 / n, images=len(samples))


def main(argv=None):
    from mmtokred.analysis.models import load_config
    from mmtokred.compensators import build_classifier
    from mmtokred.utils import allow_trusted_checkpoints
    args = parse_args(argv)
    allow_trusted_checkpoints()
    cfg = load_config(args.config, args.cfg_options)
    model = build_classifier(cfg, args.checkpoint)
    samples, classes = image_folder(args.data_root)
    if model.num_classes != len(classes):
        raise ValueError(f'the model has {model.num_classes} classes, --data-root has {len(classes)} class folders')
    if args.max_images:
        samples = samples[:args.max_images]
    result = evaluate(model, samples, cfg.data, args.batch_size, args.amp, not args.no_progress)
    print(f"{args.config}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  ({result['images']} images)")
    return result


if __name__ == '__main__':
    main()
