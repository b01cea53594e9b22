# Choosing the Token Adapter's settings (and Expediting's temperature) for the DINOv2 ViT-S/14 CamVid model on
# *training* images (never on val): every 16th training image (23 images; the model was trained on them, never
# with a reduction):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth \
#       --spec configs/sweeps/camvid_dinov2_tokenadapter_selection.py --out-dir work_dirs/camvid_dinov2_ta_selection \
#       --shape 504 672 --repeat-times 1 --warmup 0 --cfg-options test_dataloader.dataset.data_prefix.img_path=train \
#       test_dataloader.dataset.data_prefix.seg_map_path=trainannot \
#       "test_dataloader.dataset.indices=[0,16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352]"
# Candidates at the ~35% cut: the insertion layer with the logits restored, and the paper's design (mid-network
# injection, features restored) with its m-threshold ejector (two thresholds) or `max`; the ~50% point of the
# sweep scales the ratios. Expediting: the temperature at its ~35% point (this backbone's features are ~1 in norm).
def _ta(name, reduce_after, points, restore_after=None, **reducer):
    backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=reduce_after,
                    reducer=dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max'))
    backbone['reducer'].update(reducer)
    if restore_after is None:  # the head runs on the reduced grid, the class logits are restored
        backbone['restore_site'] = 'head'
        return dict(name=name, model=dict(type='TokenReductionEncoderDecoder', backbone=backbone), points=points)
    backbone['restore_after_layer'] = restore_after
    return dict(name=name, model=dict(backbone=backbone), points=points)


_expedit = dict(type='Expediting', locality=5, iterations=5, topk=20)
_expedit_backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head',
                         reducer=dict(_expedit, cluster_grid=(28, 37)))
methods = [
    _ta('TA after 0, logits', 0, [dict(r_h=0.17, r_w=0.15)]),
    _ta('TA after 2, logits', 2, [dict(r_h=0.22, r_w=0.22)]),
    _ta('TA after 3, features, m-threshold 0.02', 3, [dict(r_h=0.28, r_w=0.28)], restore_after=11,
        eject_mode='m-threshold', threshold=0.02),
    _ta('TA after 3, features, m-threshold 0.1', 3, [dict(r_h=0.28, r_w=0.28)], restore_after=11,
        eject_mode='m-threshold', threshold=0.1),
    _ta('TA after 3, features, max', 3, [dict(r_h=0.28, r_w=0.28)], restore_after=11),
    _ta('TA after 1, features, m-threshold 0.02', 1, [dict(r_h=0.2, r_w=0.17)], restore_after=11,
        eject_mode='m-threshold', threshold=0.02),
    dict(name='Expediting (after 3), temperature', model=dict(type='TokenReductionEncoderDecoder',
                                                             backbone=_expedit_backbone),
         points=[dict(temperature=t) for t in (2.0, 20.0, 100.0)]),
]
