# Third training stage of the CamVid ViT-T Segmenter: a second warm restart from the last stage-2 checkpoint
# (validation was still rising when stage 2's learning rate ran out) at a lower peak learning rate; schedule,
# 7200 iterations, bfloat16 autocast and class weights as in stage 2.
#   python tools/train.py configs/camvid/segmenter_vit-t_camvid_stage3.py   # add --resume to continue
_base_ = './segmenter_vit-t_camvid_stage2.py'

load_from = 'work_dirs/segmenter_vit-t_camvid_stage2/iter_7200.pth'
optim_wrapper = dict(optimizer=dict(lr=4e-4))
