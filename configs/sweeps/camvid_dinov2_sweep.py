# Sweep spec for the CamVid Segmenter on the pretrained DINOv2 ViT-S/14
# (configs/camvid/segmenter_vit-s14-dinov2_camvid.py), every method at two matched cuts of the unreduced model's
# GFLOPs (~35% and ~50%; 504 x 672 input, 36 x 48 tokens):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth \
#       --spec configs/sweeps/camvid_dinov2_sweep.py --out-dir work_dirs/camvid_dinov2_sweep --shape 504 672
#   (timing options used: BENCHMARKS.md section 10)
# The Token Adapter's settings and Expediting's temperature were chosen on 23 training images
# (configs/sweeps/camvid_dinov2_tokenadapter_selection.py).
def _backbone(reduce_after, reducer, restore_after=None):
    backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=reduce_after, reducer=reducer)
    if restore_after is None:  # the head runs on the reduced grid, the class logits are restored
        backbone['restore_site'] = 'head'
        return dict(type='TokenReductionEncoderDecoder', backbone=backbone)
    backbone['restore_after_layer'] = restore_after
    return dict(backbone=backbone)


_ta = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
_ta_paper = dict(_ta, eject_mode='m-threshold', threshold=0.02)
_expedit = dict(type='Expediting', locality=5, iterations=5, temperature=0.02, topk=20)
methods = [
    dict(name='Token Adapter (after 0, logits)', model=_backbone(0, _ta),
         points=[dict(r_h=0.2, r_w=0.15), dict(r_h=0.25, r_w=0.25)]),
    dict(name='Token Adapter (paper: after 3, features, m-threshold)', model=_backbone(3, _ta_paper, restore_after=11),
         points=[dict(r_h=0.28, r_w=0.28), dict(r_h=0.5, r_w=0.5)]),
    # temperature 20, chosen on training images (t 2 kept 39%): this backbone's layer-3 tokens are ~1 in norm
    # (squared neighbour distances ~0.5), so the ViT-T's 0.02 makes clustering and reconstruction nearly uniform
    # averages (it kept ~49% on val in an earlier sweep: BENCHMARKS.md section 10)
    dict(name='Expediting (after 3, t 20)', model=_backbone(3, dict(_expedit, temperature=20.0)),
         points=[dict(cluster_grid=(28, 37)), dict(cluster_grid=(22, 30))]),
    dict(name='ToMe span (after 1)', model=_backbone(1, dict(type='ToMe', mode='span'), restore_after=11),
         points=[dict(ratio=0.35, rounds=1), dict(ratio=0.32, rounds=2)]),
    dict(name='ToMe sub-block (layers 1-11)', model=_backbone(0, dict(type='ToMe', mode='sub_block'), restore_after=11),
         points=[dict(ratio=0.4), dict(ratio=0.5)]),
    dict(name='EViT (inside 3, 6, 9)', model=_backbone([2, 5, 8], dict(type='EViT', fuse=True), restore_after=11),
         points=[dict(keep_rate=0.75), dict(keep_rate=0.6)]),
    dict(name='MSTM (after 2)', model=_backbone(2, dict(type='MSTM'), restore_after=11),
         points=[dict(keep_rate=0.6), dict(keep_rate=0.4)]),
    dict(name='Pooling (after 3, avg)', model=_backbone(3, dict(type='Pooling', mode='avg', restore_mode='bilinear')),
         points=[dict(grid=(28, 37)), dict(grid=(22, 30))]),
]
