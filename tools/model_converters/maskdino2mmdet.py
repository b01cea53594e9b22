"""Convert an official MaskDINO (detectron2) checkpoint into the mmdet keys of mmtokred's ``MaskDINO``.

    python tools/model_converters/maskdino2mmdet.py maskdino_swinl_50ep_300q_hid2048_3sd1_panoptic_58.3pq.pth out.pth

The mapping (Swin backbone through mmdet's ``swin_converter``; shared tensors collapsed onto one key; denoising
and loss tensors dropped) is documented in ``mmtokred/models/maskdino/convert.py``. A checkpoint of another layout
(e.g. Mask2Former, or one without a head) is refused with the missing / unexpected keys named. The output loads
strictly into ``configs/maskdino_swinl_coco-{panoptic,instance}.py``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None):
    import torch

    from mmtokred.models.maskdino.convert import convert_maskdino
    p = argparse.ArgumentParser(description='Convert an official MaskDINO checkpoint to mmdet keys')
    p.add_argument('src', help='official checkpoint (trusted file: it is unpickled)')
    p.add_argument('dst', help='output path')
    args = p.parse_args(argv)
    ckpt = torch.load(args.src, map_location='cpu', weights_only=False)
    state = convert_maskdino(ckpt)
    torch.save(dict(state_dict=state, meta=dict(converted_from=osp.basename(args.src))), args.dst)
    print(f'converted {len(ckpt.get("model", ckpt))} official keys -> {len(state)} mmdet keys: {args.dst}')


if __name__ == '__main__':
    main()
