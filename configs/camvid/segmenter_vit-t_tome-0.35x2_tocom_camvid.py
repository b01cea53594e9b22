# CamVid ToMe at the ~35% cut (2 rounds of 0.35 after layer 3, unmerged after the last layer) + a Token Compensator
# trained once, label-free, on the 367 unlabeled training images (configs/compensators/camvid_tome.py, degree 1;
# BENCHMARKS.md section 9). Source degree 0: the weights are the unreduced model's. State dict unchanged.
# The ~50% cut: --cfg-options model.backbone.reducer.ratio=0.5 (degree 2 of the same compensator).
_base_ = './segmenter_vit-t_tome-0.35x2_camvid.py'
model = dict(backbone=dict(
    type='CompensatedVisionTransformer',
    compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-t_tocom-tome_fp16.pth', source=0)))
