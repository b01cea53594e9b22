# CI: the tiny MaskDINO of ./maskdino_tiny_coco-panoptic.py with the Token Adapter per window (12x12 windows keep 8
# rows and 8 columns) on the last block of stage 3 (global block 5).
_base_ = './maskdino_tiny_coco-panoptic.py'
model = dict(backbone=dict(type='ReducedSwinTransformer', reducer=dict(type='TokenAdapter', grid=8),
                           reduce_after_layer=4))
