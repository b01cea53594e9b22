"""The CamVid dataset class."""
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
SHARED_CAMVID = osp.join(ROOT, '..', 'shared', 'data', 'camvid')


def load_sample(data_root, split='val', index=0):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmtokred  # noqa: F401
    init_default_scope('mmseg')
    ds = DATASETS.build(dict(type='CamVidDataset', data_root=data_root,
                             data_prefix=dict(img_path=split, seg_map_path=split + 'annot'),
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))
    return ds, ds[index]


@pytest.mark.skipif(not osp.isdir(SHARED_CAMVID), reason='../shared/data/camvid is absent')
def test_camvid_dataset_loads_a_real_sample():
    ds, sample = load_sample(SHARED_CAMVID)
    assert len(ds) == 101
    assert ds.metainfo['classes'][0] == 'sky' and len(ds.metainfo['classes']) == 11
    assert sample['img'].shape == (360, 480, 3)
    values = set(np.unique(sample['gt_seg_map']).tolist())
    assert values <= set(range(11)) | {255} and 11 not in values


def test_camvid_void_becomes_ignore(tmp_path):
    import cv2
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_street_scenes import make_street_scenes
    root = make_street_scenes(str(tmp_path / 'scenes'), num_train=0, num_val=1, size=(64, 48))
    label_path = osp.join(root, 'valannot', 'scene_0000.png')
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    label[:4] = 11                                  # void rows
    cv2.imwrite(label_path, label)
    _, sample = load_sample(root)
    seg = sample['gt_seg_map']
    assert (seg[:4] == 255).all()
    assert np.array_equal(seg[4:], label[4:])        # the 11 classes keep their ids
