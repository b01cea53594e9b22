# Segmenter ViT-L/16 ADE20K + Token Adapter with the four options of BENCHMARKS.md section 11 (issue 20): lines
# scored by redundancy with separate drops, similarities on LayerNorm'd tokens, local injector, soft local ejector.
# Same grid and insertion layers as segmenter_vitl_tokenadapter_ade.py (the paper's setting). The options were
# chosen on CamVid training images (DINOv2 ViT-S/14 and ViT-T); their accuracy on ADE20K is not measured here (no
# ADE20K data on this machine): this config exists to measure their cost at ViT-L 640 (BENCHMARKS.md section 13).
_base_ = './segmenter_vitl_tokenadapter_ade.py'
model = dict(backbone=dict(reducer=dict(importance='redundancy', separate_drops=True, match_features='layernorm',
                                        injector='local', eject_mode='soft', eject_radius=1)))
