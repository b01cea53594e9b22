# Token Compensator spec for the CamVid Segmenter ViT-T/16 with the Token Adapter (configs/camvid/): degree 0 =
# unreduced, 1 = the ~35% cut (configs/camvid/segmenter_vit-t_tokenadapter-r0.2x0.13_camvid.py), 2 = r 0.25 (~50% cut: 3.56 GFLOPs, -49%).
#   python tools/train_compensator.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/compensators/camvid_tokenadapter.py --images ../shared/data/camvid/train --work-dir work_dirs/tocom_camvid_ta --amp
_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_site = dict(reduce_after_layer=0, restore_site='head')
degrees = [
    None,
    dict(reducer=dict(_ta, r_h=0.2, r_w=0.13), **_site),
    dict(reducer=dict(_ta, r_h=0.25, r_w=0.25), **_site),
]
rank = 4      # channels per degree step: 2 steps -> an 8-channel LoRA on q and v of the 12 layers
scale = 0.1   # the paper's s
