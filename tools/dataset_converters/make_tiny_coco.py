"""Generate a tiny COCO-format panoptic + instance dataset with the real COCO categories (CI and smoke tests).

Layout (what mmdet's COCO configs expect under ``data_root``)::

    ROOT/val2017/*.jpg                              images
    ROOT/annotations/panoptic_val2017.json          panoptic: images, annotations[].segments_info, 133 categories
    ROOT/annotations/panoptic_val2017/*.png         panoptic PNGs, segment id = R + 256 G + 256^2 B (0 = void)
    ROOT/annotations/instances_val2017.json         instances: things only, RLE masks, boxes, 80 categories

Categories: the names (and colours) of mmdet's ``CocoPanopticDataset`` (80 things + 53 stuff) and ``CocoDataset``
(80 things) METAINFO, paired with the official COCO category ids (things 1..90, stuff 92..200, with gaps).

Each image is a few stuff regions (background) with thing instances (rectangles and ellipses) painted on top, in
their category's colour with noise, plus a small void patch; a later instance occludes an earlier one, and both
annotation files describe the visible pixels only. One thing instance per split is a crowd (``iscrowd=1``).
Sizes cycle through a list that includes sizes not divisible by 32. Deterministic for a given seed.

    python tools/dataset_converters/make_tiny_coco.py data/tiny_coco --num 4 --splits val2017
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

# Official COCO category ids, in the order of mmdet's METAINFO class lists (the COCO panoptic order).
THING_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) + list(range(46, 66)) +
             [67, 70] + list(range(72, 83)) + list(range(84, 91)))
STUFF_IDS = [92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138, 141, 144, 145, 147, 148, 149,
             151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189,
             190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200]
# (W, H): two of them are not multiples of 32 (nor of a Swin window after the stride-4 stem)
DEFAULT_SIZES = ((160, 120), (150, 101), (97, 133), (128, 96))
MIN_SEGMENT_AREA = 16   # drop segments that occlusion left smaller than this (pixels)


def coco_categories():
    """Returns (panoptic, instance) category lists in COCO json form: 133 dicts with ``id, name, supercategory,
    isthing, color`` and the 80 thing dicts with ``id, name, supercategory``. Names and colours from mmdet."""
    from mmdet.datasets import CocoDataset, CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    things, stuff = list(meta['thing_classes']), list(meta['stuff_classes'])
    if list(meta['classes']) != things + stuff or len(things) != len(THING_IDS) or len(stuff) != len(STUFF_IDS):
        raise RuntimeError(f'unexpected mmdet CocoPanopticDataset METAINFO: {len(things)} things, {len(stuff)} stuff')
    if list(CocoDataset.METAINFO['classes']) != things:
        raise RuntimeError('mmdet CocoDataset classes differ from CocoPanopticDataset thing_classes')
    panoptic = [dict(id=cid, name=name, supercategory='thing' if isthing else 'stuff', isthing=int(isthing),
                     color=[int(c) for c in color])
                for cid, name, isthing, color in zip(THING_IDS + STUFF_IDS, things + stuff,
                                                     [True] * len(things) + [False] * len(stuff), meta['palette'])]
    instance = [dict(id=c['id'], name=c['name'], supercategory=c['supercategory']) for c in panoptic[:len(things)]]
    return panoptic, instance


def encode_segment_ids(ids):
    """(H, W) int segment ids -> (H, W, 3) uint8 RGB with id = R + 256 G + 256^2 B (COCO panoptic PNG)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min() < 0 or ids.max() >= 256 ** 3:
        raise ValueError(f'segment ids must lie in [0, 256^3), got [{ids.min()}, {ids.max()}]')
    return np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2], axis=-1).astype(np.uint8)


def decode_segment_ids(rgb):
    """(H, W, 3) RGB panoptic PNG -> (H, W) int64 segment ids (inverse of :func:`encode_segment_ids`)."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]


def mask_bbox(mask):
    """[x, y, w, h] (COCO, pixels) of a boolean (H, W) mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def mask_rle(mask):
    """Compressed COCO RLE of a boolean (H, W) mask, ``counts`` as str (json-serialisable)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def make_scene(rng, height, width, num_things, num_stuff, max_things=4):
    """Draw one scene. Returns ``ids (H, W) int64`` (0 = void) and ``segments``: a list of (segment id, label
    index into things + stuff, is_thing), in painting order. Segment id = 1000 * label index + k + 1."""
    yy, xx = np.mgrid[0:height, 0:width]
    ids = np.zeros((height, width), np.int64)
    segments = []
    # stuff: 2-3 regions split by lines of random slope, so that the regions are irregular
    stuff_labels = num_things + rng.choice(num_stuff, size=rng.integers(2, 4), replace=False)
    cut = rng.uniform(-0.5, 0.5, size=len(stuff_labels) - 1)
    region = np.zeros((height, width), np.int64)
    for j, c in enumerate(cut):
        region[(yy / height - 0.5) > c * (xx / width - 0.5) + (j - (len(cut) - 1) / 2) * 0.3] = j + 1
    for j, label in enumerate(stuff_labels):
        seg_id = 1000 * int(label) + 1
        ids[region == j] = seg_id
        segments.append((seg_id, int(label), False))
    # things: rectangles and ellipses, painted in order (later ones occlude earlier ones)
    for k in range(int(rng.integers(2, max_things + 1))):
        label = int(rng.integers(num_things))
        h, w = rng.integers(height // 6, height // 2), rng.integers(width // 6, width // 2)
        y0, x0 = rng.integers(0, height - h), rng.integers(0, width - w)
        if rng.uniform() < 0.5:
            shape = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        else:
            shape = ((yy - y0 - h / 2) / (h / 2)) ** 2 + ((xx - x0 - w / 2) / (w / 2)) ** 2 <= 1
        seg_id = 1000 * label + k + 2
        ids[shape] = seg_id
        segments.append((seg_id, label, True))
    # a small void (unlabelled) patch, as in real COCO panoptic
    vy, vx = rng.integers(0, height - 4), rng.integers(0, width - 4)
    ids[vy:vy + 4, vx:vx + 4] = 0
    return ids, segments


def render_image(rng, ids, segments, palette):
    """(H, W, 3) uint8 RGB: each segment in its category colour (per-segment brightness jitter) plus noise."""
    image = np.zeros(ids.shape + (3,), np.float32)
    for seg_id, label, _ in segments:
        image[ids == seg_id] = np.asarray(palette[label], np.float32) * rng.uniform(0.8, 1.2)
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_tiny_coco(root, num=4, sizes=DEFAULT_SIZES, seed=0, splits=('val2017',)):
    """Write ``num`` images per split (sizes (W, H) cycle through ``sizes``). Returns ``root``."""
    import cv2
    if num < 1:
        raise ValueError(f'num must be >= 1, got {num}')
    if not sizes or any(min(s) < 32 for s in sizes):
        raise ValueError(f'sizes must be a non-empty list of (W, H) with W, H >= 32, got {sizes}')
    panoptic_cats, instance_cats = coco_categories()
    num_things = len(instance_cats)
    palette = [c['color'] for c in panoptic_cats]
    rng = np.random.default_rng(seed)
    for split in splits:
        pan_dir = osp.join(root, 'annotations', f'panoptic_{split}')
        os.makedirs(pan_dir, exist_ok=True)
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, pan_anns, inst_anns = [], [], []
        crowd_done = False
        for i in range(num):
            width, height = sizes[i % len(sizes)]
            image_id = i + 1
            ids, segments = make_scene(rng, height, width, num_things, len(panoptic_cats) - num_things)
            name = f'{image_id:012d}'
            segments_info = []
            for seg_id, label, is_thing in segments:
                mask = ids == seg_id
                area = int(mask.sum())
                if area < MIN_SEGMENT_AREA:     # occluded away: leave its pixels void, as COCO does
                    ids[mask] = 0
                    continue
                iscrowd = int(is_thing and not crowd_done and i == num - 1)
                crowd_done |= bool(iscrowd)
                category_id = panoptic_cats[label]['id']
                bbox = mask_bbox(mask)
                segments_info.append(dict(id=seg_id, category_id=category_id, iscrowd=iscrowd, area=area,
                                          bbox=bbox))
                if is_thing:
                    inst_anns.append(dict(id=len(inst_anns) + 1, image_id=image_id, category_id=category_id,
                                          segmentation=mask_rle(mask), area=area, bbox=bbox, iscrowd=iscrowd))
            image = render_image(rng, ids, segments, palette)
            cv2.imwrite(osp.join(root, split, name + '.jpg'), image[..., ::-1])
            cv2.imwrite(osp.join(pan_dir, name + '.png'), encode_segment_ids(ids)[..., ::-1])
            images.append(dict(id=image_id, file_name=name + '.jpg', height=height, width=width))
            pan_anns.append(dict(image_id=image_id, file_name=name + '.png', segments_info=segments_info))
        info = dict(description=f'tiny generated COCO {split} (mmtokred make_tiny_coco.py, seed {seed})')
        _dump(osp.join(root, 'annotations', f'panoptic_{split}.json'),
              dict(info=info, licenses=[], images=images, annotations=pan_anns, categories=panoptic_cats))
        _dump(osp.join(root, 'annotations', f'instances_{split}.json'),
              dict(info=info, licenses=[], images=images, annotations=inst_anns, categories=instance_cats))
    return root


def _dump(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output data root')
    parser.add_argument('--num', type=int, default=4, help='images per split')
    parser.add_argument('--splits', nargs='+', default=['val2017'], help='e.g. train2017 val2017')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    make_tiny_coco(args.root, args.num, seed=args.seed, splits=args.splits)
    print(f'wrote {args.num} COCO panoptic + instance images per split ({", ".join(args.splits)}) to {args.root}')


if __name__ == '__main__':
    main()
