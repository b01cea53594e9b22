"""Training utilities: the class-weighted loss, the bfloat16 autocast optimizer wrapper, and tools/train.py
(--amp on a CPU, resuming a stopped run) on a tiny generated dataset."""
import glob
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmtokred  # noqa: F401  (registers)
from mmtokred.engine import AutocastOptimWrapper, WeightedCrossEntropyLoss

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT


def test_weighted_ce_is_the_weighted_mean_over_labelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 4)
    label = torch.randint(0, 3, (2, 5, 4))
    label[0, :2] = 255
    w = [0.5, 1.0, 3.0]
    loss = WeightedCrossEntropyLoss(class_weight=w, loss_weight=2.0)(logits, label, ignore_index=255)
    valid = label != 255
    ce = F.cross_entropy(logits, label.clamp(max=2), reduction='none')[valid]
    pix_w = torch.tensor(w)[label[valid]]
    assert torch.allclose(loss, 2.0 * (pix_w * ce).sum() / pix_w.sum(), atol=1e-6)


def test_weighted_ce_rejects_a_class_count_mismatch_and_negative_weights():
    with pytest.raises(ValueError, match='2 class weights for 3 classes'):
        WeightedCrossEntropyLoss(class_weight=[1.0, 1.0])(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2).long())
    with pytest.raises(ValueError, match='class_weight'):
        WeightedCrossEntropyLoss(class_weight=[1.0, -1.0])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.dtype_seen = None

    def forward(self, x):
        y = self.fc(x)
        self.dtype_seen = y.dtype
        return y


def test_autocast_wrapper_runs_forward_in_bfloat16_and_keeps_float32_parameters():
    net = _Net()
    before = net.fc.weight.detach().clone()
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    with wrapper.optim_context(net):
        loss = net(torch.randn(3, 8)).float().square().mean()
    wrapper.update_params(loss)
    assert net.dtype_seen == torch.bfloat16
    assert net.fc.weight.dtype == torch.float32 and not torch.equal(net.fc.weight, before)
    net(torch.randn(3, 8))
    assert net.dtype_seen == torch.float32  # outside the context nothing is cast


def test_autocast_wrapper_rejects_bad_dtypes():
    opt = torch.optim.SGD(_Net().parameters(), lr=0.1)
    with pytest.raises(ValueError, match='dtype must be one of'):
        AutocastOptimWrapper(optimizer=opt, dtype='int8')
    wrapper = AutocastOptimWrapper(optimizer=opt, dtype='float16')
    with pytest.raises(ValueError, match='needs a CUDA model'):
        with wrapper.optim_context(_Net()):
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU branch of --amp')
def test_train_with_amp_on_cpu_then_resume(tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_data import make_tiny_ade
    data = make_tiny_ade(str(tmp_path / 'tiny_ade'), num=2, size=(96, 64))
    work = tmp_path / 'work'
    common = ['--work-dir', str(work), '--cfg-options', f'train_dataloader.dataset.data_root={data}',
              f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
              'train_dataloader.batch_size=1', 'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=1',
              'default_hooks.checkpoint.by_epoch=False']
    script = osp.join(ROOT, 'tools', 'train.py')
    cfg = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')

    def train(*extra, iters):
        return subprocess.run([sys.executable, script, cfg, '--amp', *extra, *common, f'train_cfg.max_iters={iters}'],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)

    first = train(iters=2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (work / 'iter_2.pth').exists()
    dumped = open(glob.glob(str(work / '*' / 'vis_data' / 'config.py'))[0]).read()
    assert "type='AutocastOptimWrapper'" in dumped and "dtype='bfloat16'" in dumped
    second = train('--resume', iters=3)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert 'resumed' in log.lower() and 'Iter(train) [3/3]' in log
    assert (work / 'iter_3.pth').exists()
