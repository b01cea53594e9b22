"""Deterministic synthetic street scenes with dense labels, in the CamVid on-disk layout and classes.

    ROOT/{train,val}/*.png (RGB) and ROOT/{trainannot,valannot}/*.png (labels 0..10, CamVid order)

Each scene: sky above a horizon, a row of textured buildings, road and pavement below, trees, poles, signs, cars,
pedestrians and a cyclist now and then, with lighting changes and sensor noise. They need no download and let
``make demo`` run a real train-once / reduce-without-retraining measurement on any machine.

    python tools/dataset_converters/make_street_scenes.py work_dirs/demo/scenes --num-train 96 --num-val 24
"""
import argparse
import os
import os.path as osp

import numpy as np

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
BASE_COLOUR = {SKY: (200, 215, 235), BUILDING: (120, 95, 85), POLE: (90, 90, 95), ROAD: (85, 80, 90),
               PAVEMENT: (160, 150, 140), TREE: (60, 120, 50), SIGN: (220, 190, 40), FENCE: (130, 110, 70),
               CAR: (40, 60, 160), PEDESTRIAN: (150, 60, 70), BICYCLIST: (200, 90, 30)}


def _rect(img, lab, y0, y1, x0, x1, cls, colour):
    h, w = lab.shape
    y0, y1, x0, x1 = max(0, int(y0)), min(h, int(y1)), max(0, int(x0)), min(w, int(x1))
    if y1 > y0 and x1 > x0:
        img[y0:y1, x0:x1] = colour
        lab[y0:y1, x0:x1] = cls


def _ellipse(img, lab, cy, cx, ry, rx, cls, colour):
    h, w = lab.shape
    yy, xx = np.mgrid[0:h, 0:w]
    m = ((yy - cy) / max(ry, 1)) ** 2 + ((xx - cx) / max(rx, 1)) ** 2 <= 1
    img[m] = colour
    lab[m] = cls


def make_street_scene(rng, height=240, width=320):
    """Returns image (H, W, 3) uint8 RGB and label (H, W) uint8 in 0..10."""
    img = np.zeros((height, width, 3), np.float32)
    lab = np.zeros((height, width), np.uint8)
    jitter = lambda c, s=18: np.clip(np.array(c) + rng.normal(0, s, 3), 0, 255)  # noqa: E731
    horizon = int(height * rng.uniform(0.38, 0.55))
    yy = np.arange(height)[:, None]
    img[:] = jitter(BASE_COLOUR[SKY]) * (0.85 + 0.15 * yy / height)[..., None]
    # buildings: a row of blocks with windows, reaching the horizon
    x = -int(rng.uniform(0, 30))
    while x < width:
        bw = int(rng.uniform(0.12, 0.3) * width)
        top = int(rng.uniform(0.05, 0.7) * horizon)
        colour = jitter(BASE_COLOUR[BUILDING], 30)
        _rect(img, lab, top, horizon, x, x + bw, BUILDING, colour)
        for wy in range(top + 6, horizon - 8, 14):
            for wx in range(x + 5, x + bw - 8, 12):
                if 0 <= wx < width:
                    img[wy:wy + 6, max(wx, 0):min(wx + 6, width)] = colour * 0.55
        x += bw + int(rng.uniform(0, 12))
    # road and pavement
    kerb = horizon + int((height - horizon) * rng.uniform(0.12, 0.3))
    _rect(img, lab, horizon, kerb, 0, width, PAVEMENT, jitter(BASE_COLOUR[PAVEMENT]))
    _rect(img, lab, kerb, height, 0, width, ROAD, jitter(BASE_COLOUR[ROAD]))
    for lx in range(int(rng.uniform(0, 40)), width, 60):   # lane markings stay road
        img[int((kerb + height) / 2):int((kerb + height) / 2) + 3, lx:lx + 25] = (230, 230, 230)
    if rng.uniform() < 0.5:                                 # a fence along the pavement
        fy = horizon - int(rng.uniform(10, 25))
        _rect(img, lab, fy, horizon, 0, int(width * rng.uniform(0.3, 0.8)), FENCE, jitter(BASE_COLOUR[FENCE]))
    for _ in range(rng.integers(1, 4)):                     # trees
        cx, r = rng.uniform(0, width), rng.uniform(14, 34)
        _rect(img, lab, horizon - r * 0.4, horizon + 4, cx - 3, cx + 3, TREE, (70, 50, 30))
        _ellipse(img, lab, horizon - r * 1.1, cx, r, r * 0.9, TREE, jitter(BASE_COLOUR[TREE], 25))
    for _ in range(rng.integers(1, 4)):                     # poles, some with a sign
        px = rng.uniform(0, width)
        top = rng.uniform(0.2, 0.6) * horizon
        _rect(img, lab, top, kerb, px - 2, px + 2, POLE, jitter(BASE_COLOUR[POLE], 10))
        if rng.uniform() < 0.6:
            _rect(img, lab, top, top + 12, px - 7, px + 7, SIGN, jitter(BASE_COLOUR[SIGN], 20))
    for _ in range(rng.integers(0, 4)):                     # cars on the road
        cw = rng.uniform(0.12, 0.25) * width
        ch = cw * rng.uniform(0.4, 0.55)
        cx, base = rng.uniform(-0.1, 1.0) * width, rng.uniform(kerb + 0.3 * ch, height)
        colour = jitter(BASE_COLOUR[CAR], 60)
        _rect(img, lab, base - ch, base, cx, cx + cw, CAR, colour)
        _rect(img, lab, base - ch * 1.45, base - ch + 1, cx + cw * 0.2, cx + cw * 0.8, CAR, colour * 0.8)
    for _ in range(rng.integers(0, 4)):                     # pedestrians on the pavement
        px, base = rng.uniform(0, width), rng.uniform(horizon + 2, kerb + 4)
        hgt = rng.uniform(18, 34)
        _ellipse(img, lab, base - hgt * 0.45, px, hgt * 0.45, hgt * 0.14, PEDESTRIAN,
                 jitter(BASE_COLOUR[PEDESTRIAN], 40))
        _ellipse(img, lab, base - hgt * 0.98, px, hgt * 0.1, hgt * 0.1, PEDESTRIAN, (210, 170, 140))
    if rng.uniform() < 0.3:                                  # a cyclist
        bx, base = rng.uniform(0, width), rng.uniform(kerb + 10, height)
        _ellipse(img, lab, base - 8, bx - 10, 8, 8, BICYCLIST, (30, 30, 30))
        _ellipse(img, lab, base - 8, bx + 10, 8, 8, BICYCLIST, (30, 30, 30))
        _ellipse(img, lab, base - 26, bx, 14, 6, BICYCLIST, jitter(BASE_COLOUR[BICYCLIST], 30))
    img *= rng.uniform(0.7, 1.2)                             # lighting
    img += rng.normal(0, 6, img.shape)                       # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8), lab


def make_street_scenes(root, num_train=96, num_val=24, size=(320, 240), seed=0, splits=('train', 'val')):
    """Write the scenes (deterministic for a seed; the val scenes follow the train scenes in one random stream,
    so the same (seed, num_train) gives the same val set even when only ``splits=('val',)`` is written);
    size is (width, height). Returns root."""
    import cv2
    rng = np.random.default_rng(seed)
    for split, num in (('train', num_train), ('val', num_val)):
        if split not in splits:
            for _ in range(num):
                make_street_scene(rng, size[1], size[0])
            continue
        os.makedirs(osp.join(root, split), exist_ok=True)
        os.makedirs(osp.join(root, split + 'annot'), exist_ok=True)
        for i in range(num):
            image, label = make_street_scene(rng, size[1], size[0])
            cv2.imwrite(osp.join(root, split, f'scene_{i:04d}.png'), image[..., ::-1])
            cv2.imwrite(osp.join(root, split + 'annot', f'scene_{i:04d}.png'), label)
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('root')
    p.add_argument('--num-train', type=int, default=96)
    p.add_argument('--num-val', type=int, default=24)
    p.add_argument('--size', type=int, nargs=2, default=(320, 240), metavar=('W', 'H'))
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    make_street_scenes(args.root, args.num_train, args.num_val, tuple(args.size), args.seed)
    print(f'wrote {args.num_train} + {args.num_val} scenes to {args.root}')


if __name__ == '__main__':
    main()
