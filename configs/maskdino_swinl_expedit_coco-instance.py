# MaskDINO Swin-L (COCO instance, mask-enhanced) + Expediting per window, no retraining: the reference MaskDINO model
# setting (Expedit-DINO): alpha 10 -> first reduced block 10 (stage 3, local block 6), 12x12 windows clustered to
# 9x9, lambda 5, kappa 3, t 0.01, k 25, reconstruction at the end of stage 3.
# Published: mask AP 52.3 -> 51.6, backbone 937 -> 737 GFLOPs at 1152x1152.
_base_ = './maskdino_swinl_coco-instance.py'

model = dict(backbone=dict(
    type='ReducedSwinTransformer',
    reducer=dict(type='Expediting', cluster_grid=9, locality=5, iterations=3, temperature=0.01, topk=25,
                 normalize='l2'),
    reduce_after_layer=9))
