# The CamVid Token Adapter at the ~50% cut (r_h = r_w = 0.25 after layer 0: 23x30 -> 18x23 tokens, 3.56 GFLOPs,
# -49%) + the same Token Compensator (degree 2 of configs/compensators/camvid_tokenadapter.py).
_base_ = './segmenter_vit-t_tokenadapter-r0.2x0.13_tocom_camvid.py'
model = dict(backbone=dict(reducer=dict(r_h=0.25, r_w=0.25)))
