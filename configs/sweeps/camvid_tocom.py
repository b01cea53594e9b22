# What a Token Compensator regains on the CamVid Segmenter ViT-T/16, for the Token Adapter, Expediting and ToMe at
# ~35% and ~50% GFLOPs cuts (no retraining of the model; each compensator was trained once, label-free, on the
# unlabeled training images: BENCHMARKS.md section 9). The points are the degrees of the compensator specs
# (configs/compensators/camvid_*.py), so each compensated point finds its degree by its setting.
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/sweeps/camvid_tocom.py --out-dir work_dirs/camvid_tocom_sweep --shape 360 480 --repeat-times 3
def _pair(name, backbone, points, compensator):
    """The method alone, then with its compensator (the same reduction; the branch adds dW(0 -> degree)); the
    compensated rows report their mIoU gain over the method alone (paired-bootstrap interval)."""
    model = dict(type='TokenReductionEncoderDecoder') if backbone.get('restore_site') == 'head' else dict()
    compensated = dict(backbone, type='CompensatedVisionTransformer', compensator=dict(checkpoint=compensator))
    return [dict(name=name, model=dict(model, backbone=backbone), points=points),
            dict(name=name + ' + ToCom', model=dict(model, backbone=compensated), points=points, compare_to=name)]


_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_expedit = dict(type='Expediting', locality=5, iterations=5, temperature=0.02, topk=20, normalize='l2')
methods = [
    *_pair('Token Adapter (after 0)',
           dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head', reducer=_ta),
           [dict(r_h=0.2, r_w=0.13), dict(r_h=0.25, r_w=0.25)],
           'checkpoints/camvid_segmenter_vit-t_tocom-tokenadapter_fp16.pth'),
    *_pair('Expediting (after 3)',
           dict(type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head', reducer=_expedit),
           [dict(cluster_grid=(17, 22)), dict(cluster_grid=(13, 17))],
           'checkpoints/camvid_segmenter_vit-t_tocom-expediting_fp16.pth'),
    *_pair('ToMe span (after 3)',
           dict(type='ReducedVisionTransformer', reduce_after_layer=3, restore_after_layer=11,
                reducer=dict(type='ToMe', mode='span', rounds=2)),
           [dict(ratio=0.35), dict(ratio=0.5)],
           'checkpoints/camvid_segmenter_vit-t_tocom-tome_fp16.pth'),
]
