"""Mistakes that used to get past the early checks (a corrupt checkpoint, a reducer on an unreduced backbone type,
a replaced reducer keeping the old type's keys, a typo in a backbone or top-level key, ``--cfg-options KEY``
without a value, a reduced sweep baseline, a non-image file among the images, ``--repeat-times 0``, ``--fp16`` on
a CPU): one line naming the problem and the fix, before any model or dataset is built."""
import importlib.util
import os.path as osp

import pytest

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
TINY = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')
TINY_TA = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')
HINT = '  [--debug shows the traceback]'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('errors')
    data, ckpt, _ = helpers.tiny_ade_and_checkpoint(tmp, num=2, config=TINY)
    return data, ckpt, tmp


def run_test_tool(argv, capsys):
    from mmtokred.utils import run_cli
    status = run_cli(helpers.load_tool('test.py').main, argv)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize('case', ['corrupt checkpoint', 'unreduced type', 'replaced reducer', 'backbone typo',
                                  'top-level typo', 'not an image'])
def test_tools_test_one_line_before_any_work(case, tiny, capsys, tmp_path):
    data, ckpt, _ = tiny
    config, options = TINY_TA, [f'test_dataloader.dataset.data_root={data}']
    if case == 'corrupt checkpoint':
        with open(ckpt, 'rb') as f:
            head = f.read()[:5000]
        ckpt = str(tmp_path / 'truncated.pth')
        with open(ckpt, 'wb') as f:
            f.write(head)            # an interrupted download
        expected = (f'checkpoint {ckpt} is not a readable PyTorch checkpoint (neither a torch zip archive nor a '
                    'torch pickle: an incomplete download or another kind of file?); download it again or pass the '
                    '.pth file')
    elif case == 'unreduced type':
        options.append('model.backbone.type=VisionTransformer')
        expected = ('model.backbone.type: VisionTransformer takes no reducer; set '
                    'model.backbone.type=ReducedVisionTransformer (same state dict, the official checkpoint loads '
                    'unchanged)')
    elif case == 'replaced reducer':
        options.append('model.backbone.reducer.type=ToMe')
        expected = ("model.backbone.reducer: ToMe takes no 'r_h', 'r_w', 'unique_ratio_h', 'unique_ratio_w' (its "
                    "options: mode, prop_attn, r, ratio, rounds). Replacing a config's reducer with another type "
                    'keeps the old keys unless the new dict has _delete_=True: in a config reducer=dict('
                    "_delete_=True, type='ToMe', ...), on the command line --cfg-options "
                    'model.backbone.reducer="dict(_delete_=True,type=ToMe,...)"')
    elif case == 'backbone typo':
        options.append('model.backbone.reduce_after_layr=2')
        expected = ("model.backbone.reduce_after_layr: ReducedVisionTransformer takes no 'reduce_after_layr' "
                    "(did you mean 'reduce_after_layer'?)")
    elif case == 'top-level typo':
        options.append('test_dataloder.dataset.data_root=elsewhere')
        expected = ("--cfg-options test_dataloder.dataset.data_root: the config has no 'test_dataloder' (did you "
                    "mean 'test_dataloader'?); a misspelt key is silently ignored (the config's keys: --verbose "
                    'shows the config)')
    else:
        import shutil
        bad_data = tmp_path / 'with_text'
        shutil.copytree(data, bad_data)
        bad = bad_data / 'images' / 'validation' / 'notes.jpg'
        bad.write_text('not an image')
        options = [f'test_dataloader.dataset.data_root={bad_data}']
        expected = (f'test_dataloader.dataset: {bad} is not a .jpg image (it does not start like one); remove it '
                    'from the image folder or replace it')
    status, out, err = run_test_tool([config, ckpt, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *options],
                                     capsys)
    assert (status, out) == (1, '')
    assert err == f'error: {expected}{HINT}\n'


def test_the_delete_fix_works(tiny):
    """What the replaced-reducer message suggests is accepted."""
    import argparse

    from mmtokred.hosts.settings import load_checked_config
    from mmtokred.utils.cli import add_cfg_options_arg
    p = argparse.ArgumentParser()
    add_cfg_options_arg(p)
    args = p.parse_args(['--cfg-options', 'model.backbone.reducer=dict(_delete_=True,type=ToMe,ratio=0.4)'])
    cfg = load_checked_config(TINY_TA, args.cfg_options)
    assert dict(cfg.model.backbone.reducer) == dict(type='ToMe', ratio=0.4)


def test_cfg_options_without_a_value(capsys):
    import argparse

    from mmtokred.utils.cli import add_cfg_options_arg
    p = argparse.ArgumentParser()
    add_cfg_options_arg(p)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(['--cfg-options', 'a.b=1', 'model.backbone.reducer.r_h'])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "error: --cfg-options takes KEY=VALUE pairs, got 'model.backbone.reducer.r_h' (e.g. "
        'model.backbone.reducer.r_h=VALUE; quote values with spaces)')


def test_runner_keys_and_config_keys_pass():
    from mmtokred.utils.config_checks import check_option_keys
    cfg = helpers.load_cfg('configs/tiny/segmenter_tiny_ade.py')
    check_option_keys(cfg, {'test_dataloader.dataset.data_root': 'x', 'custom_hooks': [], 'load_from': 'y',
                            'env_cfg.dist_cfg.backend': 'gloo', 'model_wrapper_cfg': {},
                            'compensator.mode': 'branch'})      # a new key unlike any other: allowed


@pytest.mark.parametrize('config', ['configs/mask2former_swinl_expedit_ade.py',
                                    'configs/mask2former_swinl_tokenadapter_coco-panoptic.py',
                                    'configs/maskdino_swinl_expedit_coco-instance.py',
                                    'configs/tiny/maskdino_tiny_tokenadapter_coco-panoptic.py'])
def test_swin_configs_pass_the_key_checks(config):
    """No false alarm on the Swin hosts (mmseg and mmdet registries); every ViT config: test_all_configs.py."""
    from mmtokred.hosts.backbone_checks import check_backbone_cfg
    check_backbone_cfg(helpers.load_cfg(config))


def test_evaluator_paths_follow_data_root():
    """mmdet's evaluators read the annotation files themselves: a data_root override moves them too."""
    from mmtokred.hosts.settings import load_checked_config
    cfg = load_checked_config(osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_coco-panoptic.py'),
                              {'test_dataloader.dataset.data_root': '/elsewhere/coco'})
    pq, ap = cfg.test_evaluator
    assert pq.ann_file == '/elsewhere/coco/annotations/panoptic_val2017.json'
    assert pq.seg_prefix == '/elsewhere/coco/annotations/panoptic_val2017/'
    assert ap.ann_file == '/elsewhere/coco/annotations/instances_val2017.json'
    untouched = load_checked_config(osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_coco-panoptic.py'))
    assert untouched.test_evaluator[0].ann_file == 'data/tiny_coco/annotations/panoptic_val2017.json'


def test_sweep_refuses_a_reduced_baseline(tiny, tmp_path):
    data, ckpt, _ = tiny
    spec = tmp_path / 'spec.py'
    spec.write_text("methods = []\n")
    from mmtokred.utils import InputError
    with pytest.raises(InputError, match=r"^sweep: the baseline config .*segmenter_tiny_tokenadapter_ade.py is "
                                         r"itself reduced \(TokenAdapter\(.*\); give the unreduced config"):
        helpers.load_tool('analysis_tools/sweep.py').main([TINY_TA, ckpt, '--spec', str(spec), '--out-dir',
                                                           str(tmp_path / 'o'), '--cfg-options',
                                                           f'test_dataloader.dataset.data_root={data}'])


def test_demo_refuses_zero_repeats(capsys):
    with pytest.raises(SystemExit) as exc:
        helpers.load_tool('demo.py').main(['--repeat-times', '0'])
    assert exc.value.code == 2
    assert 'argument --repeat-times: must be an integer >= 1, got 0' in capsys.readouterr().err


def test_benchmark_fp16_on_cpu_warns(capsys):
    helpers.load_tool('analysis_tools/benchmark.py').main(
        [TINY, '--device', 'cpu', '--fp16', '--shape', '32', '--repeat-times', '1', '--warmup', '0', '--no-progress',
         '--num-threads', '1'])
    assert 'warning: --fp16 on a CPU: most CPU kernels have no float16 path' in capsys.readouterr().err


def test_mmdet_configs_count_flops_at_their_test_scale():
    """get_flops.py without --shape on an mmdet config: the largest image of the test Resize, padded like the
    data preprocessor (COCO: scale (1333, 800) with keep_ratio -> 800 x 1333 -> 800 x 1344)."""
    from mmtokred.analysis.models import input_shape
    assert input_shape(helpers.load_cfg('configs/mask2former_swinl_coco-panoptic.py')) == (800, 1344)
    assert input_shape(helpers.load_cfg('configs/maskdino_swinl_coco-instance.py')) == (800, 1344)
    assert input_shape(helpers.load_cfg('configs/tiny/mask2former_tiny_coco-panoptic.py')) == (128, 224)
    assert input_shape(helpers.load_cfg('configs/segmenter_vitl_ade.py')) == (640, 640)     # the test crop


def test_evaluators_build_without_mmengine_prefix_message():
    """mmengine logs 'The prefix is not set in metric class IoUMetric' for upstream mmseg configs (the sweep and the
    demo printed it); our evaluator builder drops that message, and only that one."""
    import logging

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import mmtokred  # noqa: F401
    from mmtokred.analysis.evaluate import _evaluator
    init_default_scope('mmseg')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        _evaluator(dict(type='IoUMetric', iou_metrics=['mIoU']))
        assert not [r for r in records if 'prefix is not set' in str(r.msg)]
        from mmengine.registry import METRICS
        METRICS.build(dict(type='IoUMetric', iou_metrics=['mIoU']))        # upstream: the message is logged
        assert [r for r in records if 'prefix is not set' in str(r.msg)]
    finally:
        logger.removeHandler(handler)


def test_tools_test_sets_the_thread_count(tmp_path):
    """--num-threads applies before anything else (here the run stops at the missing checkpoint)."""
    import torch

    from mmtokred.utils import InputError
    wanted = 3 if torch.get_num_threads() != 3 else 2
    with pytest.raises(InputError, match='checkpoint not found'):
        helpers.load_tool('test.py').main([TINY, str(tmp_path / 'missing.pth'), '--num-threads', str(wanted)])
    assert torch.get_num_threads() == wanted
    with pytest.raises(SystemExit):
        helpers.load_tool('test.py').parse_args([TINY, 'x.pth', '--num-threads', '0'])


def test_visualize_tokens_refuses_an_unreduced_config(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from mmtokred.utils import run_cli
    image = str(tmp_path / 'x.png')
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    tool = helpers.load_tool('analysis_tools/visualize_tokens.py')
    assert run_cli(tool.main, [image, TINY, '--out', str(tmp_path / 'out.png')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'model.backbone has no reducer' in err[0] and 'reduced config' in err[0]
    assert not (tmp_path / 'out.png').exists()
