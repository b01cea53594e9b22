"""Tools a user can trust (issue 15): early one-line errors, strict loading, an untouched model after a failed
insert, the hook through --cfg-options, --show-dir on a small test set, timing warnings, quiet tools.

The exact messages asserted here are the ones listed in docs/errors.md."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
TINY = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')
TINY_TA = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')
HINT = '  [--debug shows the traceback]'


tool = helpers.load_tool


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cli')
    data, ckpt, state = helpers.tiny_ade_and_checkpoint(tmp, num=3, config=TINY)
    other = str(tmp / 'other_dataset.pth')    # the same model trained on a 19-class dataset
    torch.save(dict(state_dict={k: (v[:, :19] if k == 'decode_head.cls_emb' else
                                    v[:19] if k.startswith('decode_head.mask_norm') else v)
                                for k, v in state.items()}), other)
    return data, ckpt, other, tmp


def run_test_tool(argv, capsys):
    from mmtokred.utils import run_cli
    status = run_cli(tool('test.py').main, argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def data_opt(data):
    return f'test_dataloader.dataset.data_root={data}'


# ---------------------------------------------------------------------------------------------------------------
# early one-line errors (before the Runner: no config dump, no model, no dataset)
# ---------------------------------------------------------------------------------------------------------------
EARLY_FIX = '(make the data, see the README, or set --cfg-options test_dataloader.dataset.data_root=DIR)'
LAYER_RANGE = ('must be an integer (or a list of integers) in [-1, 3] for this 4-layer backbone (-1: before the first '
               'layer)')


@pytest.mark.parametrize('case', ['missing checkpoint', 'float layer', 'empty folder', 'hook layer'])
def test_tools_test_early_one_line_errors(case, tiny, capsys):
    """End to end through tools/test.py: one line on stderr, nothing on stdout (no config dump, no log)."""
    data, ckpt, _, tmp = tiny
    config, checkpoint, options = TINY_TA, ckpt, [data_opt(data)]
    if case == 'missing checkpoint':
        checkpoint = str(tmp / 'missing.pth')
        expected = f'checkpoint not found: {checkpoint}'
    elif case == 'float layer':
        options.append('model.backbone.reduce_after_layer=1.5')
        expected = f'model.backbone: reduce_after_layer {LAYER_RANGE}, got 1.5'
    elif case == 'empty folder':
        empty = tmp / 'empty_ade'
        (empty / 'images' / 'validation').mkdir(parents=True, exist_ok=True)
        (empty / 'annotations' / 'validation').mkdir(parents=True, exist_ok=True)
        options = [data_opt(empty)]
        expected = (f'test_dataloader.dataset: the image folder {empty}/images/validation (data_prefix.img_path) is '
                    f'empty: nothing to evaluate {EARLY_FIX}')
    else:   # the hook through --cfg-options, as its docstring says: validated before the run as well
        config = TINY
        options.append('custom_hooks=[dict(type=TokenReductionHook,reducer=dict(type=ToMe,ratio=0.5),'
                       'reduce_after_layer=7)]')
        expected = f'custom_hooks[0] (TokenReductionHook): reduce_after_layer {LAYER_RANGE}, got 7'
    status, out, err = run_test_tool([config, checkpoint, '--work-dir', str(tmp / 'wd'), '--cfg-options', *options],
                                     capsys)
    assert status == 1
    assert err == f'error: {expected}{HINT}\n'
    assert out == ''


@pytest.fixture(scope='module')
def tiny_ta_cfg():
    return helpers.load_cfg(TINY_TA)


@pytest.fixture(scope='module')
def tiny_cfg():
    return helpers.load_cfg(TINY)


@pytest.mark.parametrize('options,expected', [
    ({'model.backbone.reducer.r_h': 1.5}, 'model.backbone: r_h must be a number in [0.0, 1.0), got 1.5'),
    ({'model.backbone.reducer.type': 'TokenAdaptor'},
     "model.backbone: unknown reducer type 'TokenAdaptor'; registered: ['EViT', 'Expediting', 'MSTM', 'Pooling', "
     "'ToMe', 'TokenAdapter']"),
    ({'model.backbone.reduce_after_layer': [2, 1]},
     'model.backbone: reduce_after_layer must list distinct layers in increasing order, got [2, 1]'),
    ({'model.backbone.restore_site': 'head'},
     "model.type: restore_site='head' needs a segmentor that restores the head output "
     "(TokenReductionEncoderDecoder), got 'EncoderDecoder'"),
    ({'model.backbone.reducer': dict(type='EViT', keep_rate=0.7, _delete_=True),
      'model.backbone.with_cls_token': False},
     'model.backbone: EViT ranks tokens by an importance the host supplies (cls attention); this ViT has none '
     '(with_cls_token=False): use a reducer that ranks by the tokens themselves'),
    ({'custom_hooks': [dict(type='TokenReductionHook', reducer=dict(type='ToMe'), reduce_after_layer=1, ratio=2)]},
     "custom_hooks[0] (TokenReductionHook): unknown arguments ['ratio']; valid: reducer, reduce_after_layer, "
     'restore_after_layer, restore_site'),
    ({'test_dataloader.dataset.data_root': '/nowhere/tiny_ade'},
     f'test_dataloader.dataset.data_root: folder not found: /nowhere/tiny_ade {EARLY_FIX}'),
])
def test_config_checks_name_the_key(options, expected, tiny_ta_cfg):
    import copy

    from mmtokred.hosts.settings import check_reduction_settings
    from mmtokred.utils import InputError
    from mmtokred.utils.cli import check_dataset_folders
    cfg = copy.deepcopy(tiny_ta_cfg)
    cfg.merge_from_dict(options)
    with pytest.raises(InputError) as exc:
        check_reduction_settings(cfg)
        check_dataset_folders(cfg)
    assert str(exc.value) == expected


def test_cfg_options_read_dicts():
    """mmengine's DictAction recursed until RecursionError on dict(...) values (the hook on the command line)."""
    import argparse

    from mmtokred.utils.cli import add_cfg_options_arg
    p = argparse.ArgumentParser()
    add_cfg_options_arg(p)
    args = p.parse_args(['--cfg-options', 'a.b=1', 'c=[x,(1,2)]',
                         'custom_hooks=[dict(type=TokenReductionHook,reducer=dict(type=ToMe,ratio=0.5),'
                         'reduce_after_layer=-1)]', 'd={"k": None}'])
    assert args.cfg_options == {
        'a.b': 1, 'c': ['x', (1, 2)], 'd': {'k': None},
        'custom_hooks': [dict(type='TokenReductionHook', reducer=dict(type='ToMe', ratio=0.5), reduce_after_layer=-1)]}


def test_debug_shows_the_traceback(tiny):
    data, ckpt, _, tmp = tiny
    from mmtokred.utils import InputError, run_cli
    with pytest.raises(InputError, match='checkpoint not found'):
        run_cli(tool('test.py').main, [TINY, str(tmp / 'missing.pth'), '--debug'])


@pytest.mark.parametrize('shape,message', [
    (['0'], '--shape values must be positive integers (pixels), got 0'),
    (['96', '96', '96'], '--shape takes H W or one number S (an S x S input), got 3 numbers: 96 96 96'),
])
def test_shape_argument_errors(shape, message, capsys):
    with pytest.raises(SystemExit) as exc:
        tool('analysis_tools/get_flops.py').parse_args([TINY, '--shape', *shape])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f'error: {message}')


def test_shape_function_errors(tiny_cfg):
    from mmtokred.analysis.models import input_shape
    from mmtokred.utils import InputError
    cfg = tiny_cfg
    assert input_shape(cfg, [64]) == (64, 64) and input_shape(cfg, [64, 32]) == (64, 32)
    with pytest.raises(InputError, match='got 3 numbers'):
        input_shape(cfg, [96, 96, 96])


def test_analysis_tool_one_line_error(tiny, capsys):
    from mmtokred.utils import run_cli
    status = run_cli(tool('analysis_tools/get_flops.py').main,
                     [TINY_TA, '--cfg-options', 'model.backbone.reducer.r_w=-0.1'])
    assert status == 1
    assert capsys.readouterr().err == \
        f'error: model.backbone: r_w must be a number in [0.0, 1.0), got -0.1{HINT}\n'


def test_sweep_names_the_bad_point(tiny, tmp_path):
    data, ckpt, _, _ = tiny
    spec = tmp_path / 'spec.py'
    spec.write_text("methods = [dict(name='TA', model=dict(backbone=dict(type='ReducedVisionTransformer', "
                    "reduce_after_layer=1, reducer=dict(type='TokenAdapter'))), "
                    "points=[dict(r_h=0.2, r_w=0.2), dict(r_h=1.2, r_w=0.2)])]\n")
    from mmtokred.utils import InputError
    with pytest.raises(InputError) as exc:
        tool('analysis_tools/sweep.py').main([TINY, ckpt, '--spec', str(spec), '--out-dir', str(tmp_path / 'o'),
                                              '--cfg-options', data_opt(data)])
    assert str(exc.value) == ("sweep spec, method 'TA', point r_h=1.2, r_w=0.2: model.backbone: r_h must be a "
                              'number in [0.0, 1.0), got 1.2')


# ---------------------------------------------------------------------------------------------------------------
# Python API: validation before conversion
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs,error,message', [
    (dict(reducer='TokenAdapter', reduce_after_layer=1), TypeError,
     "reducer must be a dict such as dict(type='TokenAdapter', r_h=0.3), a built TokenReducer or None, got str "
     "'TokenAdapter'"),
    (dict(reducer=dict(type='TokenAdapter'), reduce_after_layer=1.5), ValueError,
     'reduce_after_layer must be an integer (or a list of integers) in [-1, 3] for this 4-layer backbone'),
    (dict(reducer=dict(type='TokenAdapter'), reduce_after_layer=2, restore_after_layer=1), ValueError,
     'restore_after_layer (1) must come after reduce_after_layer (2)'),
    (dict(reducer=dict(type='EViT', keep_rate=0.7), reduce_after_layer=-1), ValueError,
     'reduce_after_layer=-1 (before the first layer) has none'),
])
def test_failed_insert_leaves_the_model_untouched(kwargs, error, message, tiny_cfg):
    from mmseg.models.backbones import VisionTransformer

    import mmtokred
    model = helpers.build_model(tiny_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    with pytest.raises(error) as exc:
        mmtokred.insert_token_reduction(model, **kwargs)
    assert message in str(exc.value)
    assert type(model.backbone) is VisionTransformer
    assert not hasattr(model.backbone, 'token_reducer')
    assert model.state_dict().keys() == before.keys()
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), expected)
    # and the same call with valid settings converts it
    mmtokred.insert_token_reduction(model, dict(type='TokenAdapter', r_h=0.3, r_w=0.3), 1)
    assert model.backbone.reduction_active


# ---------------------------------------------------------------------------------------------------------------
# strict loading, the hook through --cfg-options, --show-dir (full runs of tools/test.py on 3 tiny images)
# ---------------------------------------------------------------------------------------------------------------
MISMATCH = ('does not fit this model: 3 shape mismatches (decode_head.cls_emb: checkpoint (1, 19, 64) vs model '
            '(1, 150, 64), decode_head.mask_norm.bias: checkpoint (19,) vs model (150,), decode_head.mask_norm.weight: '
            'checkpoint (19,) vs model (150,)). Is it the checkpoint of another model or dataset?')


def test_tools_test_loads_strictly(tiny, capsys):
    data, _, other, tmp = tiny
    status, out, err = run_test_tool([TINY_TA, other, '--work-dir', str(tmp / 'strict'),
                                      '--cfg-options', data_opt(data)], capsys)
    assert status == 1
    assert err == f'error: {other} {MISMATCH} (--no-strict loads the matching weights anyway){HINT}\n'
    assert 'Epoch(test)' not in out   # nothing was evaluated
    assert out.startswith('config: ') and len(out.splitlines()) == 3   # the header, then the error: no dump
    # --verbose: mmengine's environment and config dump come after the check, so the error is the first thing
    status, out, err = run_test_tool([TINY_TA, other, '--work-dir', str(tmp / 'strict'), '--verbose',
                                      '--cfg-options', data_opt(data)], capsys)
    assert status == 1 and 'System environment' not in out + err and 'Config:' not in out + err


def test_analysis_tools_load_strictly_with_the_same_message(tiny):
    from mmtokred.analysis.models import build_model
    from mmtokred.utils import CheckpointMismatch
    _, _, other, _ = tiny
    with pytest.raises(CheckpointMismatch) as exc:
        build_model(helpers.load_cfg(TINY_TA), other)
    assert str(exc.value) == f'{other} {MISMATCH} (the analysis tools need the checkpoint of this very config)'
    model = helpers.build_model(helpers.load_cfg(TINY))
    from mmtokred.utils import load_trusted_checkpoint
    with pytest.raises(CheckpointMismatch, match=r'\(strict=False loads the matching weights anyway\)$'):
        load_trusted_checkpoint(model, other)
    load_trusted_checkpoint(model, other, strict=False)   # relaxed in Python: the fitting weights load


def test_hook_via_cfg_options_show_dir_and_no_strict(tiny, monkeypatch):
    """One run of tools/test.py on 3 images with three options, each checked: the TokenReductionHook given through
    --cfg-options (as its docstring says; it used to end in RecursionError) inserts the reduction, --show-dir
    saves a picture of every image (upstream: every 50th), --no-strict loads the fitting part of a checkpoint."""
    data, _, other, tmp = tiny
    from mmtokred.reducers import TokenAdapter
    calls = []
    upstream = TokenAdapter.reduce
    monkeypatch.setattr(TokenAdapter, 'reduce', lambda self, *a: calls.append(1) or upstream(self, *a))
    show = tmp / 'show'
    metrics = tool('test.py').main([
        TINY, other, '--no-strict', '--work-dir', str(tmp / 'show_wd'), '--show-dir', str(show),
        '--cfg-options', data_opt(data),
        'custom_hooks=[dict(type=TokenReductionHook,reducer=dict(type=TokenAdapter,r_h=0.3,r_w=0.3),'
        'reduce_after_layer=1)]'])
    assert 'mIoU' in metrics
    assert len(calls) >= 3   # every test image went through the reducer (slide inference: once per crop)
    pictures = sorted(f for _, _, files in os.walk(show) for f in files if f.endswith('.png'))
    assert len(pictures) == 3 and all(f'ADE_valid_0000000{i}' in p for i, p in enumerate(pictures))


def test_quickstart_runs_quietly(tmp_path):
    """``make quickstart`` in a fresh process, as a user's first command: it passes and prints no third-party
    warning (pkg_resources, build_loss, avg_non_ignore, weights-only loading, ...)."""
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'quickstart.py'), '--work-dir', str(tmp_path)],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert 'quick start passed' in res.stdout and 'mIoU' in res.stdout
    assert 'Warning' not in out and 'warnings.warn' not in out, [line for line in out.splitlines() if 'arning' in line]


# ---------------------------------------------------------------------------------------------------------------
# timing: load, spread and plausibility warnings
# ---------------------------------------------------------------------------------------------------------------
def test_timing_warnings_on_forced_cases():
    from mmtokred.analysis.timing import MachineLoad, timing_warnings
    rows = [dict(name='base', speedup=1.0, flops_ratio=1.0, iqr_pct=3.0),
            dict(name='plausible', speedup=1.62, flops_ratio=1.50, iqr_pct=5.0),
            dict(name='implausible', speedup=13.8, flops_ratio=1.17, iqr_pct=4.0),
            dict(name='noisy', speedup=1.1, flops_ratio=1.2, iqr_pct=35.0)]
    quiet = MachineLoad(cores=2, threads=1, others_cores=0.2)
    found = timing_warnings(rows, quiet)
    assert len(found) == 2
    assert found[0].startswith('noisy: the spread is large (IQR 35% of the median > 10%)')
    assert found[1].startswith('implausible: speed-up 13.80x at a 1.17x GFLOPs ratio is implausible')
    loaded = MachineLoad(cores=2, threads=2, others_cores=1.6)
    assert timing_warnings(rows[:2], loaded) == [
        'the machine was loaded: other processes used 1.6 of 2 cores while 2 threads were timed, so the runs '
        'competed for CPU and the times (and their ratios) are unreliable; use --num-threads 1 or a quiet machine']
    assert timing_warnings(rows[:2], quiet) == []


def test_benchmark_warns_on_an_implausible_speedup(monkeypatch, capsys):
    """A forced 13.8x speed-up at the tiny Token Adapter's ~1.2x GFLOPs ratio: the tool says so."""
    import mmtokred.analysis.timing as timing

    def fake(runs, repeat, warmup, device='cpu', progress=True):
        names = list(runs)
        return {names[0]: [1.38, 1.38, 1.38], names[1]: [0.1, 0.1, 0.1]}
    monkeypatch.setattr(timing, 'time_interleaved', fake)
    tool('analysis_tools/benchmark.py').main([TINY, '--compare', TINY_TA, '--repeat-times', '3', '--no-progress',
                                              '--num-threads', '1'])
    out = capsys.readouterr().out
    assert 'timed input: 96x96; spread (IQR / median) 0.0-0.0%; 1 torch threads on' in out
    assert 'WARNING: segmenter_tiny_tokenadapter_ade: speed-up 13.80x at a' in out and 'is implausible' in out


def test_machine_load_is_measured():
    from mmtokred.analysis.timing import measure_machine_load
    with measure_machine_load() as load:
        sum(i * i for i in range(200000))
    assert load.cores == os.cpu_count() and load.threads == torch.get_num_threads()
    assert load.others_cores is None or 0 <= load.others_cores <= load.cores + 1
    assert 'cores' in load.describe()


def test_visualize_tokens_default_output_is_under_work_dirs():
    args = tool('analysis_tools/visualize_tokens.py').parse_args(['img.png', TINY_TA])
    assert args.out == osp.join('work_dirs', 'tokens.png')
