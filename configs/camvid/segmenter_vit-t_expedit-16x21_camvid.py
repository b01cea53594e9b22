# CamVid Segmenter ViT-T/16 + Expediting with 16x21 clusters; otherwise as expedit-17x22.
# 4.18 GFLOPs: matched with tokenadapter-r0.2 and tome-0.4x2.
_base_ = './segmenter_vit-t_expedit-17x22_camvid.py'
model = dict(backbone=dict(reducer=dict(cluster_grid=(16, 21))))
