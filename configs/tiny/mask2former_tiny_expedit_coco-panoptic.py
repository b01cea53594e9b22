# CI: the tiny Mask2Former of ./mask2former_tiny_coco-panoptic.py with Expediting per window (7x7 windows -> 5x5) on
# stage 3 (global blocks 4-5: the span starts at the stage's first block).
_base_ = './mask2former_tiny_coco-panoptic.py'
model = dict(backbone=dict(
    type='ReducedSwinTransformer',
    reducer=dict(type='Expediting', cluster_grid=5, locality=3, iterations=2, temperature=0.05, topk=5),
    reduce_after_layer=3))
