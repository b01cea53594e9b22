"""Train a Token Compensator (ToCom) once, by self-distillation between reduction degrees, on unlabeled images.

    python tools/train_compensator.py CONFIG CHECKPOINT --spec SPEC.py --images DIR --work-dir DIR
        [--steps N] [--batch-size B] [--lr LR] [--shape H W] [--crop H W] [--amp] [--resume] [--seed S]
        [--held-out DIR] [--held-out-count N] [--publish OUT.pth] [--cfg-options ...]

CONFIG: an mmseg config (a segmentor: KL on per-pixel class distributions; a bare ViT backbone: L1 on its last
features) or a classifier config (``model = dict(type='TimmVisionTransformer', name=...)``: KL on logits).
CHECKPOINT: its weights (trusted file). SPEC: a config file with ``degrees`` (the ordered reduction settings,
degree 0 usually ``None`` = unreduced; each a dict of reducer / reduce_after_layer / restore_after_layer /
restore_site), ``rank`` (channels per degree step) and ``scale``; see configs/compensators/. Images: every image
under --images (sub-folders and labels ignored), resized to --shape (and randomly cropped to --crop). Writes
WORK_DIR/compensator.pth (the compensator file) and WORK_DIR/latest.pth (what --resume continues from). With
--held-out, the mean divergence over every degree pair on those images is printed before and after, with and
without the compensator.
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Train a Token Compensator by self-distillation')
    p.add_argument('config')
    p.add_argument('checkpoint', help='model weights (trusted file)')
    p.add_argument('--spec', required=True, help='compensator spec: degrees, rank, scale (see configs/compensators)')
    p.add_argument('--images', required=True, help='folder of unlabeled training images (searched recursively)')
    p.add_argument('--work-dir', required=True)
    p.add_argument('--steps', type=int, default=300)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--weight-decay', type=float, default=0.05)
    p.add_argument('--temperature', type=float, default=None, help='KL temperature (default: the spec\'s, else 1)')
    p.add_argument('--shape', type=int, nargs=2, help='input H W (default: the config\'s test size)')
    p.add_argument('--crop', type=int, nargs=2, help='train on random H W crops of the resized images (same scale, '
                   'fewer tokens, cheaper steps)')
    p.add_argument('--amp', action='store_true', help='bfloat16 autocast (CPU or GPU)')
    p.add_argument('--resume', action='store_true', help='continue from WORK_DIR/latest.pth')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--save-interval', type=int, default=25)
    p.add_argument('--held-out', help='folder of held-out images to measure the divergence on')
    p.add_argument('--held-out-count', type=int, default=8)
    p.add_argument('--publish', metavar='PATH', help='also write an fp16 copy of the trained compensator to PATH and '
                   'print its sha256 (for checkpoints/)')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    for name in ('steps', 'batch_size', 'save_interval', 'held_out_count'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if args.lr <= 0:
        p.error(f'--lr must be > 0, got {args.lr}')
    return args


def build_host(cfg, checkpoint):
    """(model, input (H, W), mean, std in 0-255 RGB units) for an mmseg or a classifier config."""
    from mmtokred.compensators import CLASSIFIERS
    if cfg.model.get('type') in CLASSIFIERS:     # the model alone: the degrees set the reduction
        model = CLASSIFIERS[cfg.model.type](dict(model=cfg.model), checkpoint)
        size = cfg.data.crop
        return model, (size, size), cfg.data.mean, cfg.data.std
    from mmtokred.analysis.models import build_model, input_shape
    model = build_model(cfg, checkpoint)
    pre = cfg.model.data_preprocessor
    return model, input_shape(cfg), pre.mean, pre.std


def main(argv=None):
    import torch
    from mmengine.config import Config

    import mmtokred  # noqa: F401
    from mmtokred.analysis.models import load_config
    from mmtokred.compensators import build_compensator_for
    from mmtokred.compensators.distill import SelfDistillation, list_images, load_images, train_compensator
    from mmtokred.utils import allow_trusted_checkpoints

    args = parse_args(argv)
    allow_trusted_checkpoints()
    torch.manual_seed(args.seed)
    cfg = load_config(args.config, args.cfg_options)
    spec = Config.fromfile(args.spec)
    model, shape, mean, std = build_host(cfg, args.checkpoint)
    shape = tuple(args.shape) if args.shape else tuple(shape)
    comp = build_compensator_for(model, spec.degrees, spec.get('rank', 2), spec.get('scale', 0.1))
    temperature = args.temperature if args.temperature is not None else spec.get('temperature', 1.0)
    distill = SelfDistillation(model, comp, temperature, args.amp)
    images = list_images(args.images)
    n_params = sum(p.numel() for p in comp.parameters())
    print(f'{len(images)} images, {comp.num_steps + 1} degrees, compensator {n_params} '
          f'parameters ({comp})', flush=True)

    held = None
    if args.held_out:
        held = load_images(list_images(args.held_out)[:args.held_out_count], shape, mean, std)
        before = dict(uncompensated=distill.divergence(held, compensate=False), compensated=distill.divergence(held))
        print('held-out divergence before:', json.dumps(before), flush=True)
    t0 = time.perf_counter()
    losses = train_compensator(distill, images, shape, mean, std, args.steps, args.batch_size, args.lr,
                               args.weight_decay, args.seed, args.work_dir, args.resume, args.save_interval,
                               not args.no_progress, crop=tuple(args.crop) if args.crop else None)
    wall = time.perf_counter() - t0
    print(f'{len(losses)} steps in {wall:.0f} s ({wall / max(len(losses), 1):.2f} s/step); '
          f'wrote {osp.join(args.work_dir, "compensator.pth")}', flush=True)
    if args.publish:
        import hashlib
        comp.save(args.publish, half=True, extra=dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                                      wall_time_s=round(wall)))
        with open(args.publish, 'rb') as f:
            print(f'{args.publish}  sha256 {hashlib.sha256(f.read()).hexdigest()}')
    if held is not None:
        after = dict(uncompensated=distill.divergence(held, compensate=False), compensated=distill.divergence(held))
        print('held-out divergence after:', json.dumps(after), flush=True)
    return losses


if __name__ == '__main__':
    main()
