# Token Compensator spec for DeiT-B/16 with ToMe as the ToCom paper trains it: degrees r = 0..16 tokens merged per
# block (16 steps), h = 2 channels per step (a 32-channel LoRA on q and v of the 12 blocks: 1.18M parameters), s = 0.1.
#   python tools/train_compensator.py configs/classification/deit-b16_224.py deit_base_patch16_224-b5f2ef4d.pth \
#       --spec configs/compensators/deit-b16_tome.py --images IMAGENET_TRAIN --work-dir work_dirs/tocom_deit_b --amp
degrees = [None] + [dict(reducer=dict(type='ToMe', mode='layer', r=r)) for r in range(1, 17)]
rank = 2
scale = 0.1
