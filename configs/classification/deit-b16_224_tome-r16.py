# DeiT-B/16 + ToMe r = 16 per block (otherwise as tome-r8).
_base_ = './deit-b16_224_tome-r8.py'
reduction = dict(reducer=dict(r=16))
