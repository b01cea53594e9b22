# What a Token Compensator regains on the CamVid Segmenter ViT-T/16 (no retraining of the model; the compensator
# was trained once on the unlabeled training images, BENCHMARKS.md section 6):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/sweeps/camvid_tocom.py --out-dir work_dirs/camvid_tocom_sweep --shape 360 480 --repeat-times 3
_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_points = [dict(r_h=0.2, r_w=0.13), dict(r_h=0.25, r_w=0.25)]   # ~35% and ~50% cuts
_backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head', reducer=_ta)
methods = [
    dict(name='Token Adapter (after 0)', model=dict(type='TokenReductionEncoderDecoder', backbone=_backbone),
         points=_points),
    dict(name='Token Adapter (after 0) + ToCom',
         model=dict(type='TokenReductionEncoderDecoder',
                    backbone=dict(_backbone, type='CompensatedVisionTransformer',
                                  compensator=dict(checkpoint='checkpoints/camvid_segmenter_vit-t_tocom-tokenadapter_fp16.pth'))),
         points=_points),
]
