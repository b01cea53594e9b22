# Mask2Former Swin-L (mmdet, COCO instance; mask AP) + Token Adapter per window, no retraining.
# Every 12x12 window keeps 8 rows and 8 columns from global block 11 (stage 3, local block 7) to the end of
# stage 3: the span of the Expediting instance setting, for a comparison at matched backbone GFLOPs.
_base_ = './mask2former_swinl_coco-instance.py'

model = dict(backbone=dict(
    type='ReducedSwinTransformer',
    reducer=dict(type='TokenAdapter', grid=8, unique_ratio_h=0.1, unique_ratio_w=0.05, importance='max',
                 metric='cosine', merge='average', eject_mode='m-threshold', threshold=0.02),
    reduce_after_layer=10))
