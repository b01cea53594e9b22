"""Multi-process evaluation (tools/dist_test.sh = torchrun ... tools/test.py --launcher pytorch) on a CPU-only
machine: gloo, no torch.cuda.set_device, DDP without device ids; the metrics equal those of one process. Tiny
configs, 3 images, 2 processes of 1 thread."""
import importlib.util
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (gloo) path')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def printed_metrics(out):
    """name -> value text of the ``results:`` block of tools/test.py."""
    block = out.split('results:\n', 1)[1]
    return dict(re.findall(r'^  (\S+): (\S+)$', block, re.M))


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_coco import make_tiny_coco
    from make_tiny_data import make_tiny_ade
    run = tmp_path_factory.mktemp('dist')
    make_tiny_coco(str(run / 'tiny_coco'), num=3)
    make_tiny_ade(str(run / 'tiny_ade'), num=3, size=(128, 96))
    return run


@pytest.mark.parametrize('config,data', [('segmenter_tiny_tokenadapter_ade.py', 'tiny_ade'),
                                         ('mask2former_tiny_coco-panoptic.py', 'tiny_coco')])
def test_two_processes_give_the_metrics_of_one(config, data, run_dir):
    path = osp.join(ROOT, 'configs', 'tiny', config)
    ckpt = str(run_dir / f'{config}.pth')
    helpers.load_tool('model_converters/random_checkpoint.py').write_random_checkpoint(path, ckpt)
    common = ['--num-threads', '1', '--cfg-options', f'test_dataloader.dataset.data_root={run_dir / data}']
    mmdet = 'coco' in config
    out_one, out_two = (str(run_dir / f'{config}_{n}' / ('pred.pkl' if mmdet else 'pred')) for n in (1, 2))
    one = helpers.load_tool('test.py').main([path, ckpt, '--work-dir', str(run_dir / f'{config}_1'),
                                             '--out', out_one, *common])
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, PORT=str(free_port()))
    env.pop('OMP_NUM_THREADS', None)            # dist_test.sh sets it (torchrun warns otherwise)
    two = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_test.sh'), path, ckpt, '2',
                          '--work-dir', str(run_dir / f'{config}_2'), '--out', out_two, *common],
                         capture_output=True, text=True, cwd=str(run_dir), env=env, timeout=600)
    out = two.stdout + two.stderr
    assert two.returncode == 0, out[-3000:]
    assert 'dataset: 3 images' in two.stdout and '2 processes (gloo)' in two.stdout
    assert two.stdout.count('results:') == 1          # the main process prints
    assert 'NVIDIA' not in out and 'Traceback' not in out
    # no warning of the multi-process set-up (thread variables, DDP arguments); mmdet's own advice on --out stays
    warnings = [line for line in out.splitlines() if 'arning' in line and 'will not be compressed' not in line
                and line.strip() != 'warnings.warn(']
    assert warnings == [], warnings
    from mmtokred.utils.run_output import format_metrics
    metrics = printed_metrics(two.stdout)
    assert metrics == printed_metrics('results:\n' + format_metrics(one))
    assert {'coco_panoptic/PQ', 'coco/segm_mAP'} <= set(metrics) if mmdet else 'mIoU' in metrics
    # every image evaluated exactly once, with the same prediction (random weights give PQ / AP 0: the predictions
    # themselves are the strong check)
    if mmdet:
        from mmengine.fileio import load
        a, b = load(out_one), load(out_two)
        assert [r['img_id'] for r in a] == [r['img_id'] for r in b] and len(a) == 3
        for x, y in zip(a, b):
            assert torch.equal(x['pred_panoptic_seg']['sem_seg'], y['pred_panoptic_seg']['sem_seg'])
            assert torch.equal(x['pred_instances']['labels'], y['pred_instances']['labels'])
            torch.testing.assert_close(x['pred_instances']['scores'], y['pred_instances']['scores'])
    else:
        files = sorted(os.listdir(out_one))
        assert len(files) == 3 and files == sorted(os.listdir(out_two))
        for name in files:
            with open(osp.join(out_one, name), 'rb') as f, open(osp.join(out_two, name), 'rb') as g:
                assert f.read() == g.read(), name


def test_pytorch_launcher_without_torchrun_names_the_fix(monkeypatch):
    from mmtokred.utils import InputError
    from mmtokred.utils.dist import check_launcher_env
    for name in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match=r'^--launcher pytorch needs the processes started by torchrun \(RANK, '
                                         r'LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set\): run '
                                         r'tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES'):
        check_launcher_env('pytorch')
    check_launcher_env('none')
