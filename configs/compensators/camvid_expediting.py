# Token Compensator spec for the CamVid Segmenter ViT-T/16 with Expediting (after layer 3, logits restored):
# degree 1 = 17x22 clusters (~35% cut, configs/camvid/segmenter_vit-t_expedit-17x22_camvid.py), 2 = 13x17 (~50% cut: 3.45 GFLOPs, -51%).
_base_ = './camvid_tokenadapter.py'
_ex = dict(type='Expediting', locality=5, iterations=5, temperature=0.02, topk=20, normalize='l2')
_site = dict(reduce_after_layer=3, restore_site='head')
degrees = [
    None,
    dict(reducer=dict(_ex, cluster_grid=(17, 22)), **_site),
    dict(reducer=dict(_ex, cluster_grid=(13, 17)), **_site),
]
