# Issue 20: Expediting with the scale-free temperature (temperature_mode='relative') on the DINOv2 ViT-S/14 CamVid
# val images, at the section 10 grids (28x37 ~-33%, 22x30 ~-48%), reduced after layer 3, logits restored:
#   OMP_NUM_THREADS=1 python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth \
#       --spec configs/sweeps/camvid_dinov2_expediting_relative.py --out-dir work_dirs/camvid_dinov2_expediting_relative \
#       --shape 504 672 --repeat-times 1 --warmup 0 --num-threads 1
# t 8 was the first pass's choice (its val rows are in section 11.4); t 16 has the highest mean retained share over
# both models' training images in the second pass (configs/sweeps/camvid_vit-t_expediting_relative_selection.py and
# configs/sweeps/camvid_dinov2_tokenadapter_diagnosis.py). BENCHMARKS.md section 11.1.
_expedit = dict(type='Expediting', locality=5, iterations=5, topk=20, temperature_mode='relative')
_model = dict(type='TokenReductionEncoderDecoder', backbone=dict(
    type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head', reducer=_expedit))
_grids = [dict(cluster_grid=(28, 37)), dict(cluster_grid=(22, 30))]
methods = [
    dict(name='Expediting after 3, relative t 8', model=dict(_model, backbone=dict(
        _model['backbone'], reducer=dict(_expedit, temperature=8.0))), points=_grids),
    # the -33% grid only: the cut of the issue's >= 99% target
    dict(name='Expediting after 3, relative t 16', model=dict(_model, backbone=dict(
        _model['backbone'], reducer=dict(_expedit, temperature=16.0))), points=_grids[:1]),
]
