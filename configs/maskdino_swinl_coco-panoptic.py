# MaskDINO Swin-L, COCO panoptic (official maskdino_swinl_50ep_300q_hid2048_3sd1_panoptic_58.3pq.pth: PQ 58.3,
# mask AP 50.6). Test: shorter side 800, longer <= 1333 (mmdet's coco_panoptic test pipeline), 300 queries.
#   python tools/model_converters/maskdino2mmdet.py maskdino_swinl_..._panoptic_58.3pq.pth maskdino_swinl_panoptic.pth
#   python tools/test.py configs/maskdino_swinl_coco-panoptic.py maskdino_swinl_panoptic.pth
_base_ = ['./_base_/models/maskdino_swinl.py', 'mmdet::_base_/datasets/coco_panoptic.py',
          'mmdet::_base_/default_runtime.py']
model = dict(test_cfg=dict(semantic_on=True, panoptic_on=True, instance_on=True))
data_root = 'data/coco/'
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
