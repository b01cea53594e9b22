# CamVid Segmenter ViT-T/16 + Expediting with the scale-free temperature (temperature_mode='relative', t 16: the
# squared distances divided by each image's mean squared distance to its nearest initial centre). The same setting
# as segmenter_vit-s14-dinov2_expedit-relative-28x37_camvid.py: chosen once on both models' training images
# (BENCHMARKS.md section 11.1, second pass); val 99.5% [98.9, 100.1] of the unreduced mIoU at -36% GFLOPs.
#   python tools/test.py configs/camvid/segmenter_vit-t_expedit-relative-17x22_camvid.py \
#       checkpoints/camvid_segmenter_vit-t_fp16.pth
_base_ = './segmenter_vit-t_expedit-17x22_camvid.py'
model = dict(backbone=dict(reducer=dict(temperature_mode='relative', temperature=16.0)))
