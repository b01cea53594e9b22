# The tiny Mask2Former parts of the CI configs (not a config on its own): a Swin of 32 channels, depths 2-2-2-2,
# window 7, and a head of 32 channels with 1 pixel-decoder layer, 3 decoder layers and 10 queries. The same keys
# serve mmseg's decode_head and mmdet's panoptic_head (both Mask2FormerHead).
embed = 32
tiny_swin = dict(pretrain_img_size=224, embed_dims=embed, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7,
                 drop_path_rate=0.0)
tiny_mask2former_head = dict(
    in_channels=[embed, 2 * embed, 4 * embed, 8 * embed], feat_channels=embed, out_channels=embed, num_queries=10,
    pixel_decoder=dict(
        encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=embed, num_heads=2),
                                                  ffn_cfg=dict(embed_dims=embed, feedforward_channels=2 * embed))),
        positional_encoding=dict(num_feats=embed // 2)),
    positional_encoding=dict(num_feats=embed // 2),
    transformer_decoder=dict(
        num_layers=3, layer_cfg=dict(self_attn_cfg=dict(embed_dims=embed, num_heads=2),
                                     cross_attn_cfg=dict(embed_dims=embed, num_heads=2),
                                     ffn_cfg=dict(embed_dims=embed, feedforward_channels=2 * embed))))
