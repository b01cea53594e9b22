# MaskDINO Swin-L (COCO panoptic) + Expediting per window, no retraining: the reference MaskDINO setting (Expedit-DINO
# README, corrected alpha): alpha 12 -> the first reduced block is global block 12 (stage 3, local block 8), 12x12
# windows clustered to 9x9, lambda 5, kappa 3, t 0.01, k 25, reconstruction at the end of stage 3.
# Published: PQ 58.3 -> 57.9, backbone 937 -> 771 GFLOPs at 1152x1152.
_base_ = './maskdino_swinl_coco-panoptic.py'

model = dict(backbone=dict(
    type='ReducedSwinTransformer',
    reducer=dict(type='Expediting', cluster_grid=9, locality=5, iterations=3, temperature=0.01, topk=25,
                 normalize='l2'),
    reduce_after_layer=11))
