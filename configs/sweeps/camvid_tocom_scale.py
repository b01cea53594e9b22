# Inference-time scale s of the CamVid Token Adapter compensator (the paper searches s at inference; trained at 0.1;
# BENCHMARKS.md section 9):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/sweeps/camvid_tocom_scale.py --out-dir work_dirs/camvid_tocom_scale --shape 360 480 --repeat-times 1
_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_backbone = dict(type='CompensatedVisionTransformer', reduce_after_layer=0, restore_site='head', reducer=_ta)
_ckpt = 'checkpoints/camvid_segmenter_vit-t_tocom-tokenadapter_fp16.pth'
methods = [
    dict(name=f'Token Adapter (after 0) + ToCom, s={s}', model=dict(type='TokenReductionEncoderDecoder',
         backbone=dict(_backbone, compensator=dict(checkpoint=_ckpt, scale=s))), points=[dict(r_h=0.25, r_w=0.25)])
    for s in (0.15, 0.2, 0.3, 0.5)
]
