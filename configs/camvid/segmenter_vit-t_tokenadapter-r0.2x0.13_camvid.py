# CamVid Segmenter ViT-T/16 + Token Adapter, no retraining: injected after the first of the 12 layers
# (reduce_after_layer=0), r_h = 0.2 of the rows and r_w = 0.13 of the columns removed (23x30 -> 18x26 tokens,
# 4.52 GFLOPs, -35.6%); the rest of the backbone and the head run on the reduced grid and the ejector restores the
# class logits (restore_site='head', as Expediting does for Segmenter) with the 'max' matching mode.
# Chosen on 80 *training* images, never on val (configs/sweeps/camvid_tokenadapter_selection.py, BENCHMARKS.md):
# early injection at small ratios kept more than later injection at larger ones; restoring features before the
# head and the 'm-threshold' ejector kept less. Matched in GFLOPs with expedit-17x22 and tome-0.35x2.
_base_ = './segmenter_vit-t_camvid.py'
model = dict(
    type='TokenReductionEncoderDecoder',
    backbone=dict(type='ReducedVisionTransformer', reduce_after_layer=0, restore_site='head',
                  reducer=dict(type='TokenAdapter', r_h=0.2, r_w=0.13, unique_ratio_h=0.1, unique_ratio_w=0.05,
                               eject_mode='max')))
