# The unreduced upstream Mask2Former Swin-L (IN-21k 384 pre-training; COCO panoptic, 100 epochs, 200 queries): the
# baseline of the Swin reduction configs. Checkpoint: mmdet's (PQ 57.6, box AP 52.2, mask AP 48.5)
# mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-100e_coco-panoptic_20220407_104949-82f8d28d.pth
# The inherited test evaluators report PQ (CocoPanopticMetric) and box / mask AP of the same model (CocoMetric on
# annotations/instances_val2017.json: the panoptic model also outputs instances, test_cfg.instance_on=True).
_base_ = 'mmdet::mask2former/mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-100e_coco-panoptic.py'
custom_imports = dict(imports=['mmtokred'], allow_failed_imports=False)
model = dict(backbone=dict(init_cfg=None))   # weights come from the checkpoint: nothing downloaded at run time
