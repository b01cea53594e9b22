"""A non-editable install ships every package directory (a folder without __init__.py is silently dropped by
find_packages, and ``import mmtokred`` then fails outside the clone)."""
import os
import os.path as osp

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
