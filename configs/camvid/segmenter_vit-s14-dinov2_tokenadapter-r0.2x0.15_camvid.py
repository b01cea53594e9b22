# The DINOv2 ViT-S/14 CamVid Segmenter with the Token Adapter setting chosen on training images (after layer 0,
# r_h 0.2, r_w 0.15, the head on the reduced grid and the class logits restored, `max` ejector: 44.18 of 68.71
# GFLOPs, -36%; BENCHMARKS.md section 10). The ~50% cut: --cfg-options model.backbone.reducer.r_h=0.25
# model.backbone.reducer.r_w=0.25. State dict unchanged: the unreduced model's checkpoint loads as it is.
#   python tools/test.py configs/camvid/segmenter_vit-s14-dinov2_tokenadapter-r0.2x0.15_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth
_base_ = './segmenter_vit-s14-dinov2_camvid.py'
model = dict(
    type='TokenReductionEncoderDecoder',
    backbone=dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head',
                  reducer=dict(type='TokenAdapter', r_h=0.2, r_w=0.15, unique_ratio_h=0.1, unique_ratio_w=0.05,
                               eject_mode='max')))
