# A tiny Mask2Former (./tiny_mask2former_model.py) on the architecture of ../mask2former_swinl_coco-instance.py, on
# the instance annotations of a tiny generated COCO dataset (the real 80 categories): CI. Box / mask AP.
# Make the data with: python tools/dataset_converters/make_tiny_coco.py data/tiny_coco, and run the tools from the
# directory that holds data/ (the evaluators read the annotation files through data_root as well).
_base_ = ['../mask2former_swinl_coco-instance.py', './tiny_mask2former_model.py']
data_root = 'data/tiny_coco/'
model = dict(backbone={{_base_.tiny_swin}}, panoptic_head={{_base_.tiny_mask2former_head}})
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=(200, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
default_hooks = dict(logger=dict(interval=1))
