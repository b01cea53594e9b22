# The DINOv2 ViT-S/14 CamVid Segmenter in its head-only form (the head on the frozen backbone, the model this
# compensator was trained for; not the published tuned model) with the Token Adapter chosen on training images
# (after layer 0, r_h 0.2, r_w 0.15, logits restored, `max` ejector: 44.18 GFLOPs, -36%) + a Token Compensator
# trained once, label-free, on the unlabeled training images (configs/compensators/camvid_dinov2_tokenadapter.py,
# degree 1; BENCHMARKS.md section 10).
# The ~50% cut: --cfg-options model.backbone.reducer.r_h=0.25 model.backbone.reducer.r_w=0.25 (degree 2).
#   python tools/test.py configs/camvid/segmenter_vit-s14-dinov2_tokenadapter-r0.2x0.15_tocom_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head_fp16.pth
_base_ = './segmenter_vit-s14-dinov2_tokenadapter-r0.2x0.15_camvid.py'
model = dict(backbone=dict(
    type='CompensatedVisionTransformer',
    compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-s14-dinov2_tocom-tokenadapter_fp16.pth', source=0)))
