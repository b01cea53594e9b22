# Tiny MaskDINO (instance: 80 classes, 'bitmask' box initialisation as the mask-enhanced model) on tiny
# COCO-format data: CI. Its weights are the converted fixture checkpoint (tests/test_maskdino.py).
_base_ = ['./tiny_maskdino_model.py', 'mmdet::_base_/datasets/coco_instance.py', 'mmdet::_base_/default_runtime.py']
model = dict(panoptic_head=dict(num_classes=80, initialize_box_type='bitmask'),
             test_cfg=dict(semantic_on=False, panoptic_on=False, instance_on=True))
data_root = 'data/tiny_coco/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
# inference only (the MaskDINO port has no training path): test / val loops, no train loop
train_dataloader = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
