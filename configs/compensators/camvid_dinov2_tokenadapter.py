# Token Compensator spec for the CamVid Segmenter on the pretrained DINOv2 ViT-S/14
# (configs/camvid/segmenter_vit-s14-dinov2_camvid.py) with the Token Adapter setting chosen on training images
# (after layer 0, logits restored, `max` ejector; BENCHMARKS.md section 10): degree 1 = r_h 0.2, r_w 0.15 (~35% cut),
# 2 = r 0.25 (~50% cut). 384 wide, 12 layers: rank 4 per step -> 73,728 x 2 parameters.
#   python tools/train_compensator.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head_fp16.pth --spec configs/compensators/camvid_dinov2_tokenadapter.py \
#       --images ../shared/data/camvid/train --work-dir work_dirs/tocom_dinov2_ta --amp
_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_site = dict(reduce_after_layer=0, restore_site='head')
degrees = [
    None,
    dict(reducer=dict(_ta, r_h=0.2, r_w=0.15), **_site),
    dict(reducer=dict(_ta, r_h=0.25, r_w=0.25), **_site),
]
rank = 4
scale = 0.1
