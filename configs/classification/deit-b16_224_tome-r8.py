# DeiT-B/16 + ToMe as in its paper (and ToCom's): r = 8 tokens merged in every block between attention and MLP,
# keys averaged over heads as the metric, sizes tracked, proportional attention, cls protected. No retraining.
_base_ = './deit-b16_224.py'
reduction = dict(reducer=dict(type='ToMe', mode='layer', r=8))
