# CI: the tiny MaskDINO of ./maskdino_tiny_coco-instance.py with Expediting per window as the MaskDINO reference
# (12x12 windows -> 9x9, lambda 5, kappa 3, t 0.01, k 25) on stage 3 (global blocks 4-5).
_base_ = './maskdino_tiny_coco-instance.py'
model = dict(backbone=dict(
    type='ReducedSwinTransformer',
    reducer=dict(type='Expediting', cluster_grid=9, locality=5, iterations=3, temperature=0.01, topk=25),
    reduce_after_layer=3))
