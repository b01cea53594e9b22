# Issue 20: Expediting with the scale-free temperature (temperature_mode='relative', t 8: chosen on training images
# of both CamVid models, configs/sweeps/camvid_vit-t_expediting_relative_selection.py and
# configs/sweeps/camvid_dinov2_tokenadapter_diagnosis.py) on the CamVid ViT-T val images, beside the reference-exact
# temperature 0.02 of section 4, at the section 4 grids:
#   OMP_NUM_THREADS=1 python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py \
#       checkpoints/camvid_segmenter_vit-t_fp16.pth --spec configs/sweeps/camvid_vit-t_expediting_relative.py \
#       --out-dir work_dirs/camvid_vit-t_expediting_relative_val --shape 360 480 --repeat-times 1 --warmup 0 \
#       --num-threads 1
# BENCHMARKS.md section 11.
_expedit = dict(type='Expediting', locality=5, iterations=5, topk=20)


def _backbone(reducer):
    return dict(type='TokenReductionEncoderDecoder', backbone=dict(
        type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head', reducer=reducer))


_grids = [dict(cluster_grid=(17, 22)), dict(cluster_grid=(16, 21)), dict(cluster_grid=(15, 20))]
methods = [
    dict(name='Expediting after 3, t 0.02 (absolute)', model=_backbone(dict(_expedit, temperature=0.02)),
         points=_grids),
    dict(name='Expediting after 3, relative t 8',
         model=_backbone(dict(_expedit, temperature=8.0, temperature_mode='relative')), points=_grids),
    # the highest mean retained share over both models' training images (BENCHMARKS.md section 11.1, second pass)
    dict(name='Expediting after 3, relative t 16',
         model=_backbone(dict(_expedit, temperature=16.0, temperature_mode='relative')), points=_grids),
]
