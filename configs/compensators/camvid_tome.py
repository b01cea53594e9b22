# Token Compensator spec for the CamVid Segmenter ViT-T/16 with ToMe (span after layer 3, unmerged after the last
# layer): degree 1 = 2 rounds of 0.35 (~35% cut, configs/camvid/segmenter_vit-t_tome-0.35x2_camvid.py), 2 = 2 rounds
# of 0.5 (~50% cut).
_base_ = './camvid_tokenadapter.py'
_tome = dict(type='ToMe', mode='span', rounds=2)
_site = dict(reduce_after_layer=3, restore_after_layer=11, restore_site='backbone')
degrees = [
    None,
    dict(reducer=dict(_tome, ratio=0.35), **_site),
    dict(reducer=dict(_tome, ratio=0.5), **_site),
]
