# CamVid Segmenter ViT-T/16 + Expediting, no retraining: 23x30 tokens clustered to 17x22 after 4 layers
# (reduce_after_layer=3), lambda 5, kappa 5, t 0.02, k 20, logits restored after the head (reference Segmenter
# site). 4.48 GFLOPs: matched with tokenadapter-r0.2x0.13 and tome-0.35x2.
_base_ = './segmenter_vit-t_camvid.py'
model = dict(
    type='TokenReductionEncoderDecoder',
    backbone=dict(type='ReducedVisionTransformer', reduce_after_layer=3, restore_site='head',
                  reducer=dict(type='Expediting', cluster_grid=(17, 22), locality=5, iterations=5,
                               temperature=0.02, topk=20, normalize='l2')))
