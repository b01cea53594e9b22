# Third training stage of the CamVid ViT-T Segmenter: a second warm restart from the last stage-2 checkpoint
# (validation was still rising when stage 2's learning rate ran out), at a lower peak learning rate.
#   python tools/train.py configs/camvid/segmenter_vit-t_camvid_stage3.py   # add --resume to continue
_base_ = './segmenter_vit-t_camvid_stage2.py'

load_from = 'work_dirs/segmenter_vit-t_camvid_stage2/iter_7200.pth'

max_iters = 7200
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=1e-6, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=800)
