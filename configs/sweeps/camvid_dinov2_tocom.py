# What a Token Compensator regains on the DINOv2 ViT-S/14 CamVid Segmenter (Token Adapter after layer 0, logits
# restored; the compensator of configs/compensators/camvid_dinov2_tokenadapter.py; BENCHMARKS.md section 10):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head_fp16.pth --spec configs/sweeps/camvid_dinov2_tocom.py \
#       --out-dir work_dirs/camvid_dinov2_tocom --shape 504 672 --repeat-times 1 --warmup 0
_backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head',
                 reducer=dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max'))
_compensated = dict(_backbone, type='CompensatedVisionTransformer',
                    compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-s14-dinov2_tocom-tokenadapter_fp16.pth'))
_points = [dict(r_h=0.2, r_w=0.15), dict(r_h=0.25, r_w=0.25)]   # ~35% and ~50% cuts
methods = [
    dict(name='Token Adapter (after 0, logits)', model=dict(type='TokenReductionEncoderDecoder', backbone=_backbone),
         points=_points),
    dict(name='Token Adapter (after 0, logits) + ToCom',
         model=dict(type='TokenReductionEncoderDecoder', backbone=_compensated), points=_points,
         compare_to='Token Adapter (after 0, logits)'),
]
