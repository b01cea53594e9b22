# DeiT-B/16 at 224 (timm 'deit_base_patch16_224'; weights: the official DeiT release, passed as CHECKPOINT), no
# reduction. Evaluation: resize the short side to 256 (bicubic), centre crop 224, ImageNet mean / std.
#   python tools/test_classifier.py configs/classification/deit-b16_224.py deit_base_patch16_224-b5f2ef4d.pth --data-root IMAGENET_VAL
#   python tools/analysis_tools/get_flops.py configs/classification/deit-b16_224.py
model = dict(type='TimmVisionTransformer', name='deit_base_patch16_224', num_classes=1000)
data = dict(resize=256, crop=224, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
reduction = dict()   # no reduction; e.g. --cfg-options reduction.reducer.type=ToMe reduction.reducer.mode=layer reduction.reducer.r=8
