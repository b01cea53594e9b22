# Second training stage of the CamVid ViT-T Segmenter: continues from the 3200-iteration first stage
# (segmenter_vit-t_camvid.py) with a warm restart, bfloat16 autocast (1.6x faster on a CPU with AVX512-BF16) and
# softened median-frequency class weights (the usual CamVid remedy for classes the first stage never predicted:
# poles, signs, fences, pedestrians, bicyclists).
#   python tools/train.py configs/camvid/segmenter_vit-t_camvid.py            # stage 1 -> work_dirs/segmenter_vit-t_camvid
#   python tools/train.py configs/camvid/segmenter_vit-t_camvid_stage2.py     # stage 2 (add --resume to continue)
_base_ = './segmenter_vit-t_camvid.py'

load_from = 'work_dirs/segmenter_vit-t_camvid/iter_3200.pth'

# sqrt(median frequency / class frequency) over the 367 training label maps (see BENCHMARKS.md section 4)
class_weight = [0.528, 0.449, 2.188, 0.386, 1.0, 0.650, 1.961, 1.405, 0.888, 2.525, 2.976]
model = dict(decode_head=dict(loss_decode=dict(_delete_=True, type='WeightedCrossEntropyLoss',
                                               class_weight=class_weight)))

max_iters = 7200
optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16', optimizer=dict(lr=6e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=1e-6, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=400))
