# CamVid Segmenter ViT-T/16 + ToMe span, 2 rounds of 0.4; otherwise as tome-0.35x2.
# 4.22 GFLOPs: matched with tokenadapter-r0.2 and expedit-16x21.
_base_ = './segmenter_vit-t_tome-0.35x2_camvid.py'
model = dict(backbone=dict(reducer=dict(ratio=0.4)))
