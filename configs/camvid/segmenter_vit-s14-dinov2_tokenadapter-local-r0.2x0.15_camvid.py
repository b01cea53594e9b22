# DINOv2 ViT-S/14 CamVid Segmenter + Token Adapter with the options of BENCHMARKS.md section 11 (issue 20): after
# layer 0, r_h 0.2 / r_w 0.15 (29x41 of 36x48 tokens, ~-36% GFLOPs), the head's logits restored; lines scored by
# redundancy with separate drops, similarities on LayerNorm'd tokens, local injector, soft local ejector. Chosen on
# 23 training images (configs/sweeps/camvid_dinov2_tokenadapter_diagnosis.py: 97.6% of the unreduced mIoU, against
# 93.2% for the section 10 setting, configs/camvid/segmenter_vit-s14-dinov2_tokenadapter-r0.2x0.15_camvid.py).
#   python tools/test.py configs/camvid/segmenter_vit-s14-dinov2_tokenadapter-local-r0.2x0.15_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth
_base_ = './segmenter_vit-s14-dinov2_camvid.py'
model = dict(
    type='TokenReductionEncoderDecoder',
    backbone=dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head',
                  reducer=dict(type='TokenAdapter', r_h=0.2, r_w=0.15, unique_ratio_h=0.1, unique_ratio_w=0.05,
                               importance='redundancy', separate_drops=True, match_features='layernorm',
                               injector='local', eject_mode='soft', eject_radius=1)))
