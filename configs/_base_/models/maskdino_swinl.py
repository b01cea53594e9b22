# MaskDINO Swin-L (IDEA-Research/MaskDINO configs/coco/*/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml),
# inference only. Official checkpoints convert with tools/model_converters/maskdino2mmdet.py.
custom_imports = dict(imports=['mmtokred'], allow_failed_imports=False)
embed = 256  # official HIDDEN_DIM = CONVS_DIM = MASK_DIM
model = dict(
    type='MaskDINO',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=32, pad_value=0),  # normalise, then pad with 0
    backbone=dict(type='SwinTransformer', pretrain_img_size=384, embed_dims=192, depths=[2, 2, 18, 2],
                  num_heads=[6, 12, 24, 48], window_size=12, mlp_ratio=4, qkv_bias=True, qk_scale=None,
                  patch_norm=True, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
                  with_cp=False, convert_weights=False, init_cfg=None),
    panoptic_head=dict(
        type='MaskDINOHead', num_classes=133, num_queries=300, hidden_dim=embed, mask_dim=embed,
        initialize_box_type='no',
        pixel_decoder=dict(
            type='MaskDINOPixelDecoder', in_channels=[192, 384, 768, 1536], feat_channels=embed, out_channels=embed,
            num_extra_levels=1,  # TOTAL_NUM_FEATURE_LEVELS 5: the stride-64 level
            encoder=dict(num_layers=6, layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed, num_heads=8, num_levels=5, num_points=4, dropout=0.0,
                                   batch_first=True),
                ffn_cfg=dict(embed_dims=embed, feedforward_channels=2048, num_fcs=2, ffn_drop=0.0,
                             act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(num_feats=embed // 2, normalize=True)),
        decoder=dict(num_layers=9, return_intermediate=True, post_norm_cfg=None, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=8, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=embed, num_heads=8, num_levels=5, num_points=4, dropout=0.0,
                                batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2048, num_fcs=2, ffn_drop=0.0,
                         act_cfg=dict(type='ReLU', inplace=True))))),
    test_cfg=dict(semantic_on=False, panoptic_on=False, instance_on=True, object_mask_thr=0.25, overlap_thr=0.8,
                  pano_temp=0.06, transform_eval=True, max_per_image=100, num_things_classes=80))
