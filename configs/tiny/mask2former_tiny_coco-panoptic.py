# A tiny Mask2Former (./tiny_mask2former_model.py) on the architecture of ../mask2former_swinl_coco-panoptic.py, on a
# tiny generated COCO panoptic dataset (the real 133 categories): CI. PQ + box / mask AP, as the full-size config.
# Make the data with: python tools/dataset_converters/make_tiny_coco.py data/tiny_coco, and run the tools from the
# directory that holds data/ (the evaluators read the annotation files through data_root as well).
_base_ = ['../mask2former_swinl_coco-panoptic.py', './tiny_mask2former_model.py']
data_root = 'data/tiny_coco/'
model = dict(backbone={{_base_.tiny_swin}}, panoptic_head={{_base_.tiny_mask2former_head}})
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(200, 128), keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoPanopticMetric', ann_file=data_root + 'annotations/panoptic_val2017.json',
         seg_prefix=data_root + 'annotations/panoptic_val2017/', nproc=1),
    dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm']),
]
test_evaluator = val_evaluator
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
default_hooks = dict(logger=dict(interval=1))
