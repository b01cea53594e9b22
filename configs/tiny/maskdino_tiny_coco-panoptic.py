# Tiny MaskDINO (panoptic: 133 classes, semantic + panoptic + instance outputs) on tiny COCO-panoptic-format data:
# CI. Its weights are the converted fixture checkpoint (tests/test_maskdino.py).
_base_ = ['./tiny_maskdino_model.py', 'mmdet::_base_/datasets/coco_panoptic.py', 'mmdet::_base_/default_runtime.py']
model = dict(test_cfg=dict(semantic_on=True, panoptic_on=True, instance_on=True))
data_root = 'data/tiny_coco/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoPanopticMetric', ann_file=data_root + 'annotations/panoptic_val2017.json',
         seg_prefix=data_root + 'annotations/panoptic_val2017/'),
    dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm']),
]
test_evaluator = val_evaluator
# inference only (the MaskDINO port has no training path): test / val loops, no train loop
train_dataloader = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
