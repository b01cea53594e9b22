# Choosing the Token Adapter's setting for the CamVid model on *training* images (never on val):
#   python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py checkpoints/camvid_segmenter_vit-t_fp16.pth \
#       --spec configs/sweeps/camvid_tokenadapter_selection.py --out-dir work_dirs/camvid_ta_selection --shape 360 480 \
#       --max-images 80 --repeat-times 3 --cfg-options test_dataloader.dataset.data_prefix.img_path=train \
#       test_dataloader.dataset.data_prefix.seg_map_path=trainannot
# Insertion layer, row/column ratios, where the tokens are restored, the ejector and the importance score, all at
# GFLOPs cuts around the issue's >= 35%.
def _ta(name, reduce_after, points, restore_after=None, **reducer):
    backbone = dict(type='ReducedVisionTransformer', reduce_after_layer=reduce_after,
                    reducer=dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max'))
    backbone['reducer'].update(reducer)
    if restore_after is None:  # the head runs on the reduced grid, the class logits are restored
        backbone['restore_site'] = 'head'
        return dict(name=name, model=dict(type='TokenReductionEncoderDecoder', backbone=backbone), points=points)
    backbone['restore_after_layer'] = restore_after
    return dict(name=name, model=dict(backbone=backbone), points=points)


methods = [
    _ta('TA after 3, logits', 3, [dict(r_h=0.3, r_w=0.3), dict(r_h=0.2, r_w=0.4), dict(r_h=0.4, r_w=0.2)]),
    _ta('TA after 5, logits', 5, [dict(r_h=0.45, r_w=0.45), dict(r_h=0.3, r_w=0.55)]),
    _ta('TA after 1, logits', 1, [dict(r_h=0.25, r_w=0.25)]),
    _ta('TA after 0, logits', 0, [dict(r_h=0.2, r_w=0.2)]),
    _ta('TA after 1, features after 9', 1, [dict(r_h=0.4, r_w=0.4)], restore_after=9),
    _ta('TA after 1, features after 9, m-threshold', 1, [dict(r_h=0.4, r_w=0.4)], restore_after=9,
        eject_mode='m-threshold', threshold=0.02),
    _ta('TA after 2, features after 10', 2, [dict(r_h=0.35, r_w=0.35)], restore_after=10),
    _ta('TA after 3, features after 11', 3, [dict(r_h=0.3, r_w=0.3)], restore_after=11),
    _ta('TA after 3, logits, sum', 3, [dict(r_h=0.3, r_w=0.3)], importance='sum'),
    _ta('TA after 3, logits, range', 3, [dict(r_h=0.3, r_w=0.3)], importance='range'),
    _ta('TA after 3, logits, attention', 3, [dict(r_h=0.3, r_w=0.3)], importance='attention'),
    _ta('TA after 3, logits, unique 0.3', 3, [dict(r_h=0.3, r_w=0.3, unique_ratio_h=0.3, unique_ratio_w=0.3)]),
]

# second round, after the first showed that injecting early at small ratios keeps the most
methods += [
    _ta('TA after 0, logits', 0, [dict(r_h=0.17, r_w=0.17), dict(r_h=0.1, r_w=0.25), dict(r_h=0.25, r_w=0.1)]),
    _ta('TA after 0, logits, range', 0, [dict(r_h=0.2, r_w=0.2)], importance='range'),
    _ta('TA after 0, logits, unique 0.2', 0, [dict(r_h=0.2, r_w=0.2, unique_ratio_h=0.2, unique_ratio_w=0.2)]),
    _ta('TA after 0, features after 11', 0, [dict(r_h=0.2, r_w=0.2)], restore_after=11),
    _ta('TA after 0, features after 10', 0, [dict(r_h=0.22, r_w=0.22)], restore_after=10),
]

# third round (stage-3 model): grids of 450-468 tokens right at the 35% cut, unique lines and the matching metric
methods += [
    _ta('TA after 0, logits', 0, [dict(r_h=0.3, r_w=0.03), dict(r_h=0.35, r_w=0.0), dict(r_h=0.2, r_w=0.13),
                                  dict(r_h=0.13, r_w=0.23)]),
    _ta('TA after 0, logits, no unique lines', 0, [dict(r_h=0.25, r_w=0.1, unique_ratio_h=0.0, unique_ratio_w=0.0)]),
    _ta('TA after 0, logits, euclidean', 0, [dict(r_h=0.25, r_w=0.1)], metric='euclidean'),
]

# fourth round (stage-3 model): injection before the first layer (-1: on the patch embeddings), the merge and
# ejector ablations of the paper's Tab. 4d/4e at the chosen grid, and the layer-by-layer variant
methods += [
    _ta('TA before 0, logits', -1, [dict(r_h=0.17, r_w=0.13), dict(r_h=0.13, r_w=0.17), dict(r_h=0.2, r_w=0.1),
                                     dict(r_h=0.2, r_w=0.13)]),
    _ta('TA after 0, logits, keep', 0, [dict(r_h=0.2, r_w=0.13)], merge='keep'),
    _ta('TA after 0, logits, assignment', 0, [dict(r_h=0.2, r_w=0.13)], eject_mode='assignment'),
    _ta('TA after 0, logits, m-threshold', 0, [dict(r_h=0.2, r_w=0.13, threshold=t)
                                               for t in (0.005, 0.01, 0.02, 0.05, 0.1)], eject_mode='m-threshold'),
    _ta('TA layer-wise -1,0,1, logits', [-1, 0, 1], [dict(r_h=0.07, r_w=0.07)], unique_ratio_h=0.0,
        unique_ratio_w=0.0),
    _ta('TA after 1, logits', 1, [dict(r_h=0.2, r_w=0.17), dict(r_h=0.23, r_w=0.13)]),
    _ta('TA after 2, logits', 2, [dict(r_h=0.22, r_w=0.2)]),
]
