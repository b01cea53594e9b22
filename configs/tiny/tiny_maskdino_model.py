# A tiny MaskDINO with the Swin-L MaskDINO architecture (the fixtures' sizes, ../shared/fixtures/maskdino): Swin embed
# 16, depths 2x4, heads 1/2/4/8, window 12; width 64, FFN 128, 2 encoder / 3 decoder layers, 20 queries.
_base_ = '../_base_/models/maskdino_swinl.py'
embed = 64
model = dict(
    backbone=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
    panoptic_head=dict(
        num_queries=20, hidden_dim=embed, mask_dim=embed,
        pixel_decoder=dict(
            in_channels=[16, 32, 64, 128], feat_channels=embed, out_channels=embed,
            encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=dict(embed_dims=embed),
                                                      ffn_cfg=dict(embed_dims=embed, feedforward_channels=128))),
            positional_encoding=dict(num_feats=embed // 2)),
        decoder=dict(num_layers=3, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed), cross_attn_cfg=dict(embed_dims=embed),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=128)))))
