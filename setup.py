"""pip install . / pip wheel .: the package, its configs inside it (``mmtokred/.mim/configs``, as OpenMMLab
packages ship theirs, so that ``_base_ = 'mmtokred::...'`` works after a pip install) and the README as the long
description. An editable install (``pip install -e .``, tools/setup_env.sh) reads the configs from the clone."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_CONFIGS = osp.join('mmtokred', '.mim', 'configs')
BUILD_COMMANDS = ('build', 'build_py', 'bdist_wheel', 'sdist', 'install', 'bdist_egg')


def read_requirements(path):
    with open(osp.join(HERE, path)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def copy_configs_into_package():
    """configs/ -> mmtokred/.mim/configs (a fresh copy) when a wheel / sdist / plain install is built; returns the
    package-relative paths of the copied files (package_data)."""
    src, dst = osp.join(HERE, 'configs'), osp.join(HERE, MIM_CONFIGS)
    if any(cmd in sys.argv for cmd in BUILD_COMMANDS) and osp.isdir(src):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    files = []
    for dirpath, _, filenames in os.walk(dst):
        files += [osp.relpath(osp.join(dirpath, f), osp.join(HERE, 'mmtokred')) for f in filenames]
    return sorted(files)


version = {}
exec(open(osp.join(HERE, 'mmtokred', 'version.py')).read(), version)

setup(
    name='mmtokred',
    version=version['__version__'],
    description='Training-free token reduction (Token Adapter, Expediting, ToMe, ...) for OpenMMLab models',
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    keywords='token reduction, token merging, vision transformer, semantic segmentation, panoptic segmentation, '
             'mmsegmentation, mmdetection, openmmlab',
    classifiers=['Programming Language :: Python :: 3',
                 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
    packages=find_packages(include=['mmtokred', 'mmtokred.*']),
    package_data={'mmtokred': copy_configs_into_package()},
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'optional': read_requirements('requirements/optional.txt'),
                    'tests': read_requirements('requirements/tests.txt')},
    license='Apache-2.0',
)
