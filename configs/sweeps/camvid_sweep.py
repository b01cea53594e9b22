# Sweep spec for the CamVid Segmenter ViT-T/16 (configs/camvid/segmenter_vit-t_camvid.py):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/sweeps/camvid_sweep.py --out-dir work_dirs/camvid_sweep --shape 360 480
# The Token Adapter settings were chosen on training images (configs/sweeps/camvid_tokenadapter_selection.py);
# Expediting and ToMe run at their usual insertion layer (after 3) and at the Token Adapter's (after 0).
def _backbone(reduce_after, reducer, restore_after=None):
    backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=reduce_after, reducer=reducer)
    if restore_after is None:  # the head runs on the reduced grid, the class logits are restored
        backbone['restore_site'] = 'head'
        return dict(type='TokenReductionEncoderDecoder', backbone=backbone)
    backbone['restore_after_layer'] = restore_after
    return dict(backbone=backbone)


_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_expedit = dict(type='Expediting', locality=5, iterations=5, temperature=0.02, topk=20)
methods = [
    dict(name='Token Adapter (after 0)', model=_backbone(0, _ta),
         points=[dict(r_h=0.2, r_w=0.13), dict(r_h=0.25, r_w=0.1), dict(r_h=0.2, r_w=0.2)]),
    dict(name='Token Adapter (after 3)', model=_backbone(3, _ta), points=[dict(r_h=0.3, r_w=0.3)]),
    dict(name='Token Adapter (features, m-threshold 0.5)',
         model=_backbone(3, dict(_ta, eject_mode='m-threshold', threshold=0.5), restore_after=11),
         points=[dict(r_h=0.3, r_w=0.3)]),
    dict(name='Expediting (after 3)', model=_backbone(3, _expedit),
         points=[dict(cluster_grid=(17, 22)), dict(cluster_grid=(16, 21)), dict(cluster_grid=(15, 20))]),
    dict(name='Expediting (after 0)', model=_backbone(0, _expedit), points=[dict(cluster_grid=(18, 25))]),
    dict(name='ToMe span (after 3)', model=_backbone(3, dict(type='ToMe', mode='span'), restore_after=11),
         points=[dict(ratio=0.5, rounds=1), dict(ratio=0.35, rounds=2), dict(ratio=0.4, rounds=2)]),
    dict(name='ToMe span (after 0)', model=_backbone(0, dict(type='ToMe', mode='span'), restore_after=11),
         points=[dict(ratio=0.35, rounds=1)]),
    dict(name='ToMe sub-block (layers 2-11)', model=_backbone(1, dict(type='ToMe', mode='sub_block'), restore_after=11),
         points=[dict(ratio=0.25), dict(ratio=0.5)]),
]
