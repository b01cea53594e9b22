# Issue 20, step 1: what costs the Token Adapter its accuracy on the DINOv2 ViT-S/14 CamVid model, one part swapped
# at a time at the ~35% cut, on *training* images (every 16th, 23 images; the same ones as the selection spec), and
# the scale-free Expediting temperature (temperature_mode='relative') on the same images:
#   OMP_NUM_THREADS=1 python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth \
#       --spec configs/sweeps/camvid_dinov2_tokenadapter_diagnosis.py --out-dir work_dirs/camvid_dinov2_ta_diagnosis \
#       --shape 504 672 --repeat-times 1 --warmup 0 --num-threads 1 \
#       --cfg-options test_dataloader.dataset.data_prefix.img_path=train \
#       test_dataloader.dataset.data_prefix.seg_map_path=trainannot \
#       "test_dataloader.dataset.indices=[0,16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352]"
# Reference row: the chosen setting of section 10 (after layer 0, r_h 0.2, r_w 0.15, logits restored, `max`
# ejector). Each other Token Adapter row changes one part of it; the placement rows and the paper design were measured
# on the same images in section 10 (selection table). BENCHMARKS.md section 11.
def _backbone(reduce_after, reducer):
    # the head runs on the reduced grid, the class logits are restored
    return dict(type='TokenReductionEncoderDecoder', backbone=dict(
        type='ReducedVisionTransformer', reduce_after_layer=reduce_after, restore_site='head', reducer=reducer))


_ref = dict(type='TokenAdapter', unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max', r_h=0.2, r_w=0.15)
_swaps = [
    ('reference (importance max, global injector, max ejector)', {}),
    ('importance range', dict(importance='range')),
    ('selection random', dict(selection='random')),
    ('selection alternating', dict(selection='alternating')),
    ('importance redundancy, separate drops', dict(importance='redundancy', separate_drops=True)),
    ('matching on LayerNorm tokens', dict(match_features='layernorm')),
    ('local injector', dict(injector='local')),
    ('ejector m-threshold relative 0.02', dict(eject_mode='m-threshold', threshold_mode='relative', threshold=0.02)),
    ('ejector soft local (radius 1)', dict(eject_mode='soft', eject_radius=1)),
]
_expedit = dict(type='Expediting', locality=5, iterations=5, topk=20)
_improved = dict(importance='redundancy', separate_drops=True, match_features='layernorm', injector='local',
                 eject_mode='soft', eject_radius=1)
methods = [
    # scale-free temperature first (t / s per image, s = mean squared distance to the nearest initial centre)
    dict(name='Expediting after 3, relative temperature',
         model=_backbone(3, dict(_expedit, temperature_mode='relative', cluster_grid=(28, 37))),
         points=[dict(temperature=t) for t in (4.0, 8.0, 16.0, 32.0, 64.0)]),
    # the whole improved Token Adapter after layer 3 (28x37 kept, Expediting's grid) and after layer 0
    dict(name='TA after 3: reference', model=_backbone(3, dict(_ref, r_h=0.22, r_w=0.22)), points=[{}]),
    dict(name='TA after 3: redundancy + LayerNorm + local injector + soft local ejector',
         model=_backbone(3, dict(_ref, r_h=0.22, r_w=0.22, **_improved)), points=[{}]),
    dict(name='TA after 0: redundancy + LayerNorm + local injector + soft local ejector',
         model=_backbone(0, dict(_ref, **_improved)), points=[{}]),
    # the reverse swaps on Expediting (reference-exact temperature 20 of section 10): hard restore, reduce after 0
    dict(name='Expediting after 3, t 20, hard restore',
         model=_backbone(3, dict(_expedit, temperature=20.0, normalize='hard', cluster_grid=(28, 37))), points=[{}]),
    dict(name='Expediting after 0, t 20', model=_backbone(0, dict(_expedit, temperature=20.0, cluster_grid=(29, 41))),
         points=[{}]),
]
methods += [dict(name=f'TA after 0: {name}', model=_backbone(0, dict(_ref, **swap)), points=[{}])
            for name, swap in _swaps]
