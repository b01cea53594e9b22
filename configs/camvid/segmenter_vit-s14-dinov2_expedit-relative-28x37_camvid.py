# DINOv2 ViT-S/14 CamVid Segmenter + Expediting with the scale-free temperature (temperature_mode='relative', t 16),
# the same setting as segmenter_vit-t_expedit-relative-17x22_camvid.py (no per-model temperature; the absolute
# reference temperature would have to go from 0.02 to ~20 here). 36x48 tokens clustered to 28x37 after 4 layers,
# lambda 5, kappa 5, k 20, logits restored. Val: 99.3% [98.9, 99.6] of the unreduced mIoU at -33% GFLOPs
# (BENCHMARKS.md section 11.1).
#   python tools/test.py configs/camvid/segmenter_vit-s14-dinov2_expedit-relative-28x37_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth
_base_ = './segmenter_vit-s14-dinov2_camvid.py'
model = dict(
    type='TokenReductionEncoderDecoder',
    backbone=dict(type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head',
                  reducer=dict(type='Expediting', cluster_grid=(28, 37), locality=5, iterations=5, topk=20,
                               temperature_mode='relative', temperature=16.0)))
