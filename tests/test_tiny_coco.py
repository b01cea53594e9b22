"""The tiny COCO generator: annotations consistent with the PNGs and the images, the real COCO categories, mmdet's
datasets load it, and the ground truth scores PQ = 100 and AP = 100 with mmdet's metrics."""
import importlib.util
import json
import os.path as osp
import sys

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
sys.path.insert(0, osp.join(helpers.ROOT, 'tools', 'dataset_converters'))
import make_tiny_coco as gen  # noqa: E402

NUM = 3


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco') / 'tiny_coco')
    gen.make_tiny_coco(root, num=NUM)
    load = lambda name: json.load(open(osp.join(root, 'annotations', name)))  # noqa: E731
    return root, load('panoptic_val2017.json'), load('instances_val2017.json')


def read_rgb(path):
    import cv2
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


def test_categories_are_the_official_coco_ones(coco):
    _, pan, ins = coco
    cats = pan['categories']
    assert len(cats) == 133 and sum(c['isthing'] for c in cats) == 80
    by_id = {c['id']: c['name'] for c in cats}
    assert (by_id[1], by_id[12 + 1], by_id[90], by_id[92], by_id[200]) == \
           ('person', 'stop sign', 'toothbrush', 'banner', 'rug-merged')
    assert 12 not in by_id and 91 not in by_id and max(by_id) == 200
    assert [c['id'] for c in ins['categories']] == [c['id'] for c in cats if c['isthing']]


def test_annotations_match_the_pngs_and_images(coco):
    from pycocotools import mask as mask_utils
    root, pan, ins = coco
    assert len(pan['images']) == NUM
    sizes = {(im['width'], im['height']) for im in pan['images']}
    assert any(w % 32 or h % 32 for w, h in sizes)                  # non-divisible sizes are there
    isthing = {c['id']: c['isthing'] for c in pan['categories']}
    inst_by_img = {}
    for a in ins['annotations']:
        inst_by_img.setdefault(a['image_id'], []).append(a)
    crowds = 0
    for im, ann in zip(pan['images'], pan['annotations']):
        assert ann['image_id'] == im['id']
        assert read_rgb(osp.join(root, 'val2017', im['file_name'])).shape == (im['height'], im['width'], 3)
        ids = gen.decode_segment_ids(read_rgb(osp.join(root, 'annotations', 'panoptic_val2017', ann['file_name'])))
        assert ids.shape == (im['height'], im['width'])
        segs = ann['segments_info']
        assert sorted(set(np.unique(ids)) - {0}) == sorted(s['id'] for s in segs)   # no unlisted segment
        assert (ids == 0).any()                                                       # some void
        things = []
        for s in segs:
            mask = ids == s['id']
            assert s['area'] == mask.sum() and s['bbox'] == gen.mask_bbox(mask)
            if isthing[s['category_id']]:
                things.append((s['category_id'], s['bbox'], s['area'], s['iscrowd'], mask))
            crowds += s['iscrowd']
        insts = inst_by_img.get(im['id'], [])
        assert len(insts) == len(things)
        for (cat, bbox, area, iscrowd, mask), a in zip(things, insts):
            assert (a['category_id'], a['bbox'], a['area'], a['iscrowd']) == (cat, bbox, area, iscrowd)
            assert (mask_utils.decode(a['segmentation']).astype(bool) == mask).all()
    assert crowds == 1


def test_generation_is_deterministic(coco, tmp_path):
    root, pan, ins = coco
    again = gen.make_tiny_coco(str(tmp_path / 'again'), num=NUM)
    for name in ('panoptic_val2017.json', 'instances_val2017.json'):
        assert json.load(open(osp.join(again, 'annotations', name))) == (pan if name.startswith('pan') else ins)
    for im in pan['images']:
        png = im['file_name'].replace('.jpg', '.png')
        for sub in (osp.join('val2017', im['file_name']), osp.join('annotations', 'panoptic_val2017', png)):
            assert open(osp.join(root, sub), 'rb').read() == open(osp.join(again, sub), 'rb').read()
    other = gen.make_tiny_coco(str(tmp_path / 'other'), num=NUM, seed=1)
    assert json.load(open(osp.join(other, 'annotations', 'panoptic_val2017.json')))['annotations'] != \
        pan['annotations']


def test_segment_id_encoding_round_trips():
    ids = np.array([[0, 1, 255], [256, 132001, 256 ** 3 - 1]])
    assert (gen.decode_segment_ids(gen.encode_segment_ids(ids)) == ids).all()
    with pytest.raises(ValueError, match='segment ids'):
        gen.encode_segment_ids(np.array([[256 ** 3]]))
    with pytest.raises(ValueError, match='num'):
        gen.make_tiny_coco('/nonexistent', num=0)


def load_datasets(root):
    import mmdet.datasets  # noqa: F401  (registers)
    from mmdet.datasets import CocoDataset, CocoPanopticDataset
    pan = CocoPanopticDataset(data_root=root, ann_file='annotations/panoptic_val2017.json',
                              data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
                              test_mode=True, pipeline=[])
    ins = CocoDataset(data_root=root, ann_file='annotations/instances_val2017.json',
                      data_prefix=dict(img='val2017/'), test_mode=True, pipeline=[])
    return pan, ins


def test_mmdet_datasets_load_it(coco):
    root, pan_json, ins_json = coco
    pan, ins = load_datasets(root)
    assert len(pan) == len(ins) == NUM
    assert sum(len(pan[i]['segments_info']) for i in range(NUM)) == \
        sum(len(a['segments_info']) for a in pan_json['annotations'])
    assert sum(len(ins[i]['instances']) for i in range(NUM)) == len(ins_json['annotations'])
    assert all(0 <= s['category'] < 133 for i in range(NUM) for s in pan[i]['segments_info'])


def test_ground_truth_scores_full_pq_and_ap(coco):
    """The ground truth, fed to mmdet's metrics as predictions: PQ 100 (panopticapi) and AP 1.0 (pycocotools)."""
    import torch
    from mmdet.evaluation import CocoMetric, CocoPanopticMetric
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    root, pan_json, ins_json = coco
    pan_ds, ins_ds = load_datasets(root)
    cat2label = {c['id']: i for i, c in enumerate(pan_json['categories'])}
    pq = CocoPanopticMetric(ann_file=osp.join(root, 'annotations', 'panoptic_val2017.json'),
                            seg_prefix=osp.join(root, 'annotations', 'panoptic_val2017'), nproc=1)
    pq.dataset_meta = pan_ds.metainfo
    ap = CocoMetric(ann_file=osp.join(root, 'annotations', 'instances_val2017.json'), metric=['bbox', 'segm'])
    ap.dataset_meta = ins_ds.metainfo
    for im, ann in zip(pan_json['images'], pan_json['annotations']):
        ids = gen.decode_segment_ids(read_rgb(osp.join(root, 'annotations', 'panoptic_val2017', ann['file_name'])))
        pred = np.full(ids.shape, 133, np.int64)                    # void = len(classes)
        bboxes, labels, masks = [], [], []
        for k, s in enumerate(ann['segments_info']):
            label = cat2label[s['category_id']]
            pred[ids == s['id']] = label + k * INSTANCE_OFFSET
            if label < 80 and not s['iscrowd']:
                x, y, w, h = s['bbox']
                bboxes.append([x, y, x + w, y + h])
                labels.append(label)
                masks.append(ids == s['id'])
        sample = dict(img_id=im['id'], img_path=osp.join(root, 'val2017', im['file_name']),
                      ori_shape=ids.shape, pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pred)[None]),
                      pred_instances=dict(bboxes=torch.tensor(bboxes, dtype=torch.float32),
                                          scores=torch.ones(len(labels)), labels=torch.tensor(labels),
                                          masks=torch.from_numpy(np.stack(masks))))
        pq.process({}, [sample])
        ap.process({}, [sample])
    assert pq.evaluate(NUM)['coco_panoptic/PQ'] == pytest.approx(100.0)
    res = ap.evaluate(NUM)
    assert res['coco/segm_mAP'] == pytest.approx(1.0) and res['coco/bbox_mAP'] == pytest.approx(1.0)
