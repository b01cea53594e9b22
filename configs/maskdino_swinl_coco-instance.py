# MaskDINO Swin-L, COCO instance, mask-enhanced box initialisation ('bitmask') as the official
# maskdino_swinl_50ep_300q_hid2048_3sd1_instance_maskenhanced_mask52.3ap_box59.0ap.pth (mask AP 52.3, box AP 59.0).
# Test: shorter side 800, longer <= 1333 (mmdet's coco_instance test pipeline), 300 queries, top-100 instances.
#   python tools/model_converters/maskdino2mmdet.py maskdino_swinl_..._maskenhanced_....pth maskdino_swinl_instance.pth
#   python tools/test.py configs/maskdino_swinl_coco-instance.py maskdino_swinl_instance.pth
_base_ = ['./_base_/models/maskdino_swinl.py', 'mmdet::_base_/datasets/coco_instance.py',
          'mmdet::_base_/default_runtime.py']
model = dict(panoptic_head=dict(num_classes=80, initialize_box_type='bitmask'),
             test_cfg=dict(semantic_on=False, panoptic_on=False, instance_on=True))
# inference only (the MaskDINO port has no training path): test / val loops, no train loop
train_dataloader = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
