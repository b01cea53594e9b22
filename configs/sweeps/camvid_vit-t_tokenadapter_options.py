# Issue 20: the Token Adapter's options on the from-scratch CamVid ViT-T, one swap at a time from the section 4 choice
# (after layer 0, r_h 0.2, r_w 0.13, logits restored, `max` ejector), on *training* images (every 16th, 23 images):
#   OMP_NUM_THREADS=1 python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py \
#       checkpoints/camvid_segmenter_vit-t_fp16.pth --spec configs/sweeps/camvid_vit-t_tokenadapter_options.py \
#       --out-dir work_dirs/camvid_vit-t_ta_options --shape 360 480 --repeat-times 1 --warmup 0 --num-threads 1 \
#       --cfg-options test_dataloader.dataset.data_prefix.img_path=train \
#       test_dataloader.dataset.data_prefix.seg_map_path=trainannot \
#       "test_dataloader.dataset.indices=[0,16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352]"
# The m-threshold rows test the scale-free (relative) reading against the absolute one, which costs 12 points on
# this model's logits at 0.02 (section 4). BENCHMARKS.md section 11.
def _backbone(reduce_after, reducer):
    return dict(type='TokenReductionEncoderDecoder', backbone=dict(
        type='ReducedVisionTransformer', reduce_after_layer=reduce_after, restore_site='head', reducer=reducer))


_ref = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max', r_h=0.2, r_w=0.13)
_improved = dict(importance='redundancy', separate_drops=True, match_features='layernorm', injector='local',
                 eject_mode='soft', eject_radius=1)
_swaps = [
    ('reference', {}),
    ('m-threshold absolute 0.02', dict(eject_mode='m-threshold', threshold=0.02)),
    ('m-threshold relative 0.02', dict(eject_mode='m-threshold', threshold_mode='relative', threshold=0.02)),
    ('m-threshold relative 0.05', dict(eject_mode='m-threshold', threshold_mode='relative', threshold=0.05)),
    ('selection random', dict(selection='random')),
    ('selection alternating', dict(selection='alternating')),
    ('importance redundancy, separate drops', dict(importance='redundancy', separate_drops=True)),
    ('matching on LayerNorm tokens', dict(match_features='layernorm')),
    ('local injector', dict(injector='local')),
    ('ejector soft local (radius 1)', dict(eject_mode='soft', eject_radius=1)),
    ('ejector soft local, t 2', dict(eject_mode='soft', eject_radius=1, eject_temperature=2.0)),
    ('ejector soft local, t 8', dict(eject_mode='soft', eject_radius=1, eject_temperature=8.0)),
    ('ejector soft top-4 (global)', dict(eject_mode='soft', eject_radius=None, eject_topk=4)),
    ('redundancy + LayerNorm + local injector + soft local ejector', _improved),
    ('local injector + soft local ejector', dict(injector='local', eject_mode='soft', eject_radius=1)),
]
methods = [dict(name=f'TA after 0: {name}', model=_backbone(0, dict(_ref, **swap)), points=[{}]) for name, swap in _swaps]
methods += [
    dict(name='TA after 3: reference', model=_backbone(3, dict(_ref, r_h=0.26, r_w=0.27)), points=[{}]),
    dict(name='TA after 3: redundancy + LayerNorm + local injector + soft local ejector',
         model=_backbone(3, dict(_ref, r_h=0.26, r_w=0.27, **_improved)), points=[{}]),
    dict(name='Expediting after 3, t 0.02, hard restore',
         model=_backbone(3, dict(type='Expediting', locality=5, iterations=5, topk=20, temperature=0.02,
                                 normalize='hard', cluster_grid=(17, 22))), points=[{}]),
]
