# Mask2Former Swin-L for COCO instance segmentation (80 classes, box and mask AP). mmdet 3.3 ships no Swin-L instance
# config: this is the architecture of the Swin-L panoptic model (mask2former_swinl_coco-panoptic.py: Swin-L w12 384,
# 200 queries; only the class embedding differs, 80 + 1 classes) on mmdet's instance set-up (data pipeline,
# CocoDataset, CocoMetric bbox + segm, instance head settings of mask2former_r50_8xb2-lsj-50e_coco.py), i.e. the
# original Mask2Former's COCO instance Swin-L (maskformer2_swin_large_IN21k_384_bs16_100ep). mmdet publishes no
# checkpoint for it; the original Detectron2 weights (AP 50.1, the Expediting paper's baseline) need key conversion.
_base_ = 'mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py'
custom_imports = dict(imports=['mmtokred'], allow_failed_imports=False)

depths = [2, 2, 18, 2]
model = dict(
    backbone=dict(pretrain_img_size=384, embed_dims=192, depths=depths, num_heads=[6, 12, 24, 48], window_size=12,
                  init_cfg=None),   # weights come from the checkpoint: nothing downloaded at run time
    panoptic_head=dict(num_queries=200, in_channels=[192, 384, 768, 1536]))

# training as the Swin-L panoptic config (16 GPUs x 1 image, 100 epochs)
train_dataloader = dict(batch_size=1, num_workers=1)
max_iters = 737500
param_scheduler = dict(end=max_iters, milestones=[655556, 710184])
interval = 5000
train_cfg = dict(max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
# the upstream Swin-T keys cover depths (2, 2, 6, 2): add the norms of stage 2's blocks 6-17 (no decay, lr x 0.1)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    f'backbone.stages.2.blocks.{block_id}.norm': dict(lr_mult=0.1, decay_mult=0.0) for block_id in range(6, 18)}))
