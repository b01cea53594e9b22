# A tiny Mask2Former (./tiny_mask2former_model.py) on the architecture of ../mask2former_swinl_ade.py, on a tiny
# generated ADE20K-format dataset: CI. Make the data with:
#   python tools/dataset_converters/make_tiny_data.py data/tiny_ade --format ade
_base_ = ['../mask2former_swinl_ade.py', './tiny_mask2former_model.py']
data_root = 'data/tiny_ade'
model = dict(data_preprocessor=dict(size=(64, 64)), backbone={{_base_.tiny_swin}},
             decode_head={{_base_.tiny_mask2former_head}})
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
default_hooks = dict(logger=dict(interval=1))
