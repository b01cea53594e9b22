"""``python -m mmtokred.list``: generated from the code, so every registered reducer appears with every option of
its ``__init__``, the default from its signature, the valid values its validator states and its docstring."""
import inspect
import subprocess
import sys

import pytest

from mmtokred.list import main, reducer_options
from mmtokred.reducers import REDUCERS


def test_every_registered_reducer_and_option_is_listed(capsys):
    text = main([])
    assert capsys.readouterr().out == text
    for name, cls in REDUCERS.items():
        assert f'\n{name}: ' in '\n' + text
        block = text.split(f'{name}: ', 1)[1].split('\n\n', 1)[0]
        params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for p in params:
            assert f'  {p.name} = {p.default!r}    valid: ' in block, (name, p.name)
        options = reducer_options(cls)
        assert [o['name'] for o in options] == [p.name for p in params]
        assert all(o['description'] for o in options), (name, [o['name'] for o in options if not o['description']])


def test_valid_values_come_from_the_validators():
    by_name = {o['name']: o['valid'] for o in reducer_options(REDUCERS['TokenAdapter'])}
    assert by_name['r_h'] == 'a number in [0.0, 1.0)'
    assert by_name['metric'] == "one of ['cosine', 'dot', 'euclidean', 'manhattan']"
    assert by_name['seed'] == 'an integer >= 0'
    expediting = {o['name']: o['valid'] for o in reducer_options(REDUCERS['Expediting'])}
    assert expediting['topk'] == 'an integer >= 1'     # found although the reducer needs cluster_grid set


def test_module_entry_point_and_markdown():
    res = subprocess.run([sys.executable, '-m', 'mmtokred.list', 'ToMe', '--markdown'], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('### `ToMe`')
    assert "| `ratio` | `0.5` | a number in [0.0, 0.5] |" in res.stdout


def test_unknown_name_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['Tome'])
    assert exc.value.code == 2 and 'unknown reducer Tome; registered: ' in capsys.readouterr().err
