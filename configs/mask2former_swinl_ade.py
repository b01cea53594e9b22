# The unreduced upstream Mask2Former Swin-L (IN-22k 384 pre-training; ADE20K semantic, 640x640): the baseline of the
# Swin reduction configs. Checkpoint: mmseg's
# mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640_20221203_235933-7120c214.pth (mIoU 56.01).
_base_ = 'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py'
custom_imports = dict(imports=['mmtokred'], allow_failed_imports=False)
model = dict(backbone=dict(init_cfg=None))   # weights come from the checkpoint: nothing downloaded at run time
