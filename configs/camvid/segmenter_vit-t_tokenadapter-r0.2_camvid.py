# CamVid Segmenter ViT-T/16 + Token Adapter r_h = r_w = 0.2 after the first layer (23x30 -> 18x24 tokens,
# 4.14 GFLOPs, -41%), logits restored with the 'max' ejector; otherwise as tokenadapter-r0.2x0.13.
# Matched in GFLOPs with expedit-16x21 and tome-0.4x2.
_base_ = './segmenter_vit-t_tokenadapter-r0.2x0.13_camvid.py'
model = dict(backbone=dict(reducer=dict(r_h=0.2, r_w=0.2)))
