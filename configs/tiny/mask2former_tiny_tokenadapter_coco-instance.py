# CI: the tiny Mask2Former of ./mask2former_tiny_coco-instance.py with the Token Adapter per window (7x7 windows keep 5 rows
# and 5 columns) from global block 5 (stage 3, local block 1) to the end of stage 3.
_base_ = './mask2former_tiny_coco-instance.py'
model = dict(backbone=dict(type='ReducedSwinTransformer', reducer=dict(type='TokenAdapter', grid=5),
                           reduce_after_layer=4))
