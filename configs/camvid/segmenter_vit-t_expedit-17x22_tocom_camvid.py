# CamVid Expediting at the ~35% cut (17x22 clusters after layer 3, logits restored) + a Token Compensator trained
# once, label-free, on the 367 unlabeled training images (configs/compensators/camvid_expediting.py, degree 1;
# BENCHMARKS.md section 9). Source degree 0: the weights are the unreduced model's. State dict unchanged.
# The ~50% cut: --cfg-options "model.backbone.reducer.cluster_grid=(13,17)" (degree 2 of the same compensator).
_base_ = './segmenter_vit-t_expedit-17x22_camvid.py'
model = dict(backbone=dict(
    type='CompensatedVisionTransformer',
    compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-t_tocom-expediting_fp16.pth', source=0)))
