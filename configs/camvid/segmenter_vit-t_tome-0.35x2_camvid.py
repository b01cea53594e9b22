# CamVid Segmenter ViT-T/16 + ToMe (merge once after 4 layers, 2 rounds of 0.35, unmerge after the last layer),
# no retraining. 4.44 GFLOPs: matched with tokenadapter-r0.2x0.13 and expedit-17x22.
_base_ = './segmenter_vit-t_camvid.py'
model = dict(backbone=dict(
    type='ReducedVisionTransformer', reduce_after_layer=3, restore_after_layer=11, restore_site='backbone',
    reducer=dict(type='ToMe', ratio=0.35, rounds=2, mode='span')))
