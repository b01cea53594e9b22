# Issue 20: the scale-free Expediting temperature (temperature_mode='relative') on the from-scratch CamVid ViT-T,
# chosen on *training* images (every 16th, 23 images), beside the reference-exact temperature 0.02 of section 4:
#   OMP_NUM_THREADS=1 python tools/analysis_tools/sweep.py configs/camvid/segmenter_vit-t_camvid.py \
#       checkpoints/camvid_segmenter_vit-t_fp16.pth --spec configs/sweeps/camvid_vit-t_expediting_relative_selection.py \
#       --out-dir work_dirs/camvid_vit-t_expediting_relative --shape 360 480 --repeat-times 1 --warmup 0 --num-threads 1 \
#       --cfg-options test_dataloader.dataset.data_prefix.img_path=train \
#       test_dataloader.dataset.data_prefix.seg_map_path=trainannot \
#       "test_dataloader.dataset.indices=[0,16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352]"
# The same temperatures run on the DINOv2 model (configs/sweeps/camvid_dinov2_tokenadapter_diagnosis.py): the value
# chosen must hold on both models. BENCHMARKS.md section 11.
_expedit = dict(type='Expediting', locality=5, iterations=5, topk=20, cluster_grid=(17, 22))


def _backbone(reducer):
    return dict(type='TokenReductionEncoderDecoder', backbone=dict(
        type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head', reducer=reducer))


methods = [
    dict(name='Expediting after 3, t 0.02 (absolute, section 4)', model=_backbone(dict(_expedit, temperature=0.02)),
         points=[{}]),
    dict(name='Expediting after 3, relative temperature',
         model=_backbone(dict(_expedit, temperature_mode='relative')),
         points=[dict(temperature=t) for t in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)]),
]
