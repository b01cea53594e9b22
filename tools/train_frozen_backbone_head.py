"""Train a segmentor's decode head on a frozen backbone, from cached backbone features (cheap on a CPU).

    python tools/train_frozen_backbone_head.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
        --work-dir work_dirs/dinov2_head [--iters 300] [--batch-size 4] [--crop-tokens 24 32] [--lr 1.5e-3] \
        [--train-stride 6] [--train-images 32] [--val-stride 3] [--flip] [--threads 1]
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
3. WORK_DIR/head_iter_N.pth holds only ``decode_head.*`` (and the dataset meta): publish it with
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
    p = argparse.ArgumentParser(description='Train a decode head on cached frozen-backbone features')
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
    p.add_argument('--val-interval', type=int, default=200)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    from mmengine.config import DictAction
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='key=value config overrides')
    return p.parse_args(argv)


def build(cfg):
    """The segmentor with its backbone weights (init_weights applies the backbone's init_cfg), in eval mode."""
    import mmtokred  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    model.backbone.init_weights()
    model.eval()
    return model


def dataset(cfg, split_loader):
    from mmseg.registry import DATASETS
    ds_cfg = dict(cfg[split_loader].dataset)
    ds_cfg['pipeline'] = cfg.test_pipeline   # test scale, labels at the original size
    return DATASETS.build(ds_cfg)


def cache_features(model, ds, out_dir, prefix, flip, desc, indices):
    """Run the backbone over the images ``indices`` of ``ds`` and store {feat: (C, h, w) fp16, label: (H, W) uint8,
    img_shape} per image; returns their files. Several runs may share the work: an image is claimed with a
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
            feat = model.extract_feat(inputs)[-1][0]
            torch.save(dict(feat=feat.half(), label=label.to(torch.uint8), img_shape=tuple(sample.img_shape)),
                       path + '.tmp')
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


def evaluate(head, files, num_classes):
    from mmtokred.analysis.evaluate import class_areas, miou_from_areas
    areas = torch.zeros(3, num_classes, dtype=torch.float64)
    head.eval()
    with torch.no_grad():
        for path in files:
            item = torch.load(path, weights_only=True)
            logits = head_logits(head, item['feat'].float()[None], tuple(item['img_shape']),
                                 tuple(item['label'].shape))
            areas += class_areas(logits.argmax(1)[0], item['label'], num_classes)
    head.train()
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
    feat_dir = osp.join(args.work_dir, 'features')
    train_ds, val_ds = dataset(cfg, 'train_dataloader'), dataset(cfg, 'val_dataloader')
    train_idx = list(range(0, len(train_ds), args.train_stride))[:args.train_images]
    val_idx = list(range(0, len(val_ds), args.val_stride))
    train_files = cache_features(model, train_ds, feat_dir, 'train', args.flip, 'train features', train_idx)
    if args.cache_only:
        cache_features(model, val_ds, feat_dir, 'val', False, 'val features', val_idx)
        return
    num_classes = len(val_ds.metainfo['classes'])
    train = [torch.load(f, weights_only=True) for f in train_files]

    head = model.decode_head
    head.train()
    params = [p for p in head.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    start, last = 0, osp.join(args.work_dir, 'last.pth')
    if osp.isfile(last):
        state = torch.load(last, weights_only=False)
        head.load_state_dict(state['head'])
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
            group['lr'] = lr_at(it, args)
        idx = torch.randint(0, len(train), (args.batch_size,), generator=gen).tolist()
        feats, samples = [], []
        for i in idx:
            feat, label = crop_window(train[i]['feat'], train[i]['label'], crop, gen)
            feats.append(feat.float())
            samples.append(SegDataSample(gt_sem_seg=PixelData(data=label.long()[None])))
        logits = head.forward([torch.stack(feats)])
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
            val_files = cache_features(model, val_ds, feat_dir, 'val', False, 'val features', val_idx)
            miou = evaluate(head, val_files, num_classes)
            with open(curve_path, 'a', newline='') as f:
                csv.writer(f).writerow([done, f'{sum(losses) / len(losses):.4f}', f'{miou:.2f}',
                                        f'{time.time() - t0:.0f}'])
            print(f'\niter {done}: train loss {sum(losses) / len(losses):.4f}, val mIoU {miou:.2f}', flush=True)
            losses = []
            torch.save(dict(head=head.state_dict(), optim=optim.state_dict(), gen=gen.get_state(), iter=done),
                       last + '.tmp')
            os.replace(last + '.tmp', last)
            meta = dict(dataset_meta=dict(classes=list(val_ds.metainfo['classes']),
                                          palette=[list(map(int, c)) for c in val_ds.metainfo['palette']]),
                        iter=done, val_mIoU=round(miou, 2))
            torch.save(dict(state_dict={f'decode_head.{k}': v for k, v in head.state_dict().items()}, meta=meta),
                       osp.join(args.work_dir, f'head_iter_{done}.pth'))
    bar.close()


if __name__ == '__main__':
    from mmtokred.pretrained import MissingPretrainedError
    try:
        main()
    except MissingPretrainedError as e:   # a missing / wrong pretrained wheel: one line saying what to install
        sys.exit(f'error: {e}')
