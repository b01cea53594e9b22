"""A non-editable install ships every package directory (a folder without __init__.py is silently dropped by
find_packages, and ``import mmtokred`` then fails outside the clone)."""
import os
import os.path as osp

import pytest
from setuptools import find_packages

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_every_code_folder_is_a_package():
    code_dirs = set()
    for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, 'mmtokred')):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        if any(f.endswith('.py') for f in filenames):
            code_dirs.add(osp.relpath(dirpath, ROOT).replace(os.sep, '.'))
    shipped = set(find_packages(ROOT, include=['mmtokred', 'mmtokred.*']))
    assert code_dirs - shipped == set(), 'folders with code but no __init__.py (not shipped by pip install .)'


# ---------------------------------------------------------------------------------------------------------------
# configs inside the package: _base_ = 'mmtokred::...'
# ---------------------------------------------------------------------------------------------------------------
def _helpers():
    import importlib.util
    spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


def test_user_config_outside_the_repo_inherits_ours(tmp_path):
    from mmengine.config import Config

    import mmtokred  # noqa: F401  (registers the mmtokred:: prefix)
    user = tmp_path / 'my_config.py'
    user.write_text("_base_ = 'mmtokred::segmenter_vitl_tokenadapter_ade.py'\n"
                    "model = dict(backbone=dict(reducer=dict(r_h=0.2)))\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.type == 'ReducedVisionTransformer'
    assert cfg.model.backbone.reducer.r_h == 0.2 and cfg.model.backbone.reducer.r_w == 0.3
    model = _helpers().build_model_on_meta(cfg)
    from mmtokred import reducers_of
    assert [type(r).__name__ for r in reducers_of(model)] == ['TokenAdapter'] and len(model.backbone.layers) == 24


def test_installed_package_reads_its_own_copy(tmp_path, monkeypatch):
    """A pip install has no clone around it: the configs come from mmtokred/.mim/configs."""
    import mmtokred.config_scheme as scheme
    package = tmp_path / 'site-packages' / 'mmtokred'
    (package / '.mim' / 'configs' / 'tiny').mkdir(parents=True)
    (package / '.mim' / 'configs' / 'tiny' / 'x.py').write_text('a = 1\n')
    monkeypatch.setattr(scheme, 'PACKAGE_DIR', str(package))
    assert scheme.config_path('mmtokred::tiny/x.py') == str(package / '.mim' / 'configs' / 'tiny' / 'x.py')
    with pytest.raises(FileNotFoundError, match=r'^mmtokred::tiny/y.py: no such config in .*\.mim/configs$'):
        scheme.config_path('mmtokred::tiny/y.py')


@pytest.mark.skipif(not osp.isdir(osp.join(ROOT, '.git')) and not osp.isfile(osp.join(ROOT, '.git')),
                    reason='needs a git checkout to clone')
def test_wheel_from_a_clean_clone_holds_the_configs(tmp_path):
    import subprocess
    import sys
    import zipfile
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', '--depth', '1', f'file://{ROOT}', str(clone)], check=True, timeout=300)
    res = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                          '--no-index', '-w', str(tmp_path / 'dist'), str(clone)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    wheel = next((tmp_path / 'dist').glob('mmtokred-*.whl'))
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {osp.relpath(osp.join(d, f), osp.join(ROOT, 'configs')).replace(os.sep, '/')
               for d, _, files in os.walk(osp.join(ROOT, 'configs')) for f in files if f.endswith('.py')}
    missing = {c for c in configs if f'mmtokred/.mim/configs/{c}' not in names}
    assert not missing, sorted(missing)[:5]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('METADATA'))).decode()
    assert 'Description-Content-Type: text/markdown' in metadata and '# mmtokred' in metadata


def test_dinov2_weights_go_to_the_user_cache_when_installed(tmp_path):
    from mmtokred.pretrained import default_converted_path
    clone = tmp_path / 'clone'
    (clone / 'checkpoints').mkdir(parents=True)
    (clone / 'setup.py').write_text('')
    assert default_converted_path(str(clone), {}) == str(clone / 'checkpoints' / 'dinov2_vits14_mmseg.pth')
    site = tmp_path / 'site-packages'
    assert default_converted_path(str(site), {'XDG_CACHE_HOME': str(tmp_path / 'cache')}) == \
        str(tmp_path / 'cache' / 'mmtokred' / 'dinov2_vits14_mmseg.pth')
    assert default_converted_path(str(site), {}) == \
        osp.join(osp.expanduser('~'), '.cache', 'mmtokred', 'dinov2_vits14_mmseg.pth')
    assert default_converted_path(str(clone), {'MMTOKRED_CACHE': str(tmp_path / 'mine')}) == \
        str(tmp_path / 'mine' / 'dinov2_vits14_mmseg.pth')
    assert default_converted_path() == osp.join(ROOT, 'checkpoints', 'dinov2_vits14_mmseg.pth')   # this clone
