# The CamVid Token Adapter model at the ~35% cut (r_h 0.2, r_w 0.13 after layer 0) + a Token Compensator trained
# once, label-free, on the 367 unlabeled training images (configs/compensators/camvid_tokenadapter.py, degree 1;
# BENCHMARKS.md section 9). Source degree 0: the weights are the unreduced model's. State dict unchanged.
# On any reduced config: --cfg-options model.backbone.type=CompensatedVisionTransformer \
#     model.backbone.compensator.checkpoint=checkpoints/camvid_segmenter_vit-t_tocom-tokenadapter_fp16.pth
_base_ = './segmenter_vit-t_tokenadapter-r0.2x0.13_camvid.py'
model = dict(backbone=dict(
    type='CompensatedVisionTransformer',
    compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-t_tocom-tokenadapter_fp16.pth', source=0)))
