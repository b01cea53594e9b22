"""List the registered reducers with their options, defaults and valid values, generated from the code.

    python -m mmtokred.list [NAME ...] [--markdown]

For every reducer of :data:`mmtokred.reducers.REDUCERS`: its summary (the first docstring line), its declared
capabilities, and per ``__init__`` option its default (the signature), its valid values (what the reducer's own
validator says when given a value no option accepts: the message of ``check_ratio`` / ``check_int`` /
``check_choice``; '-' where the validity depends on other options) and its description (the docstring's Args).
"""
import argparse
import inspect
import re
import sys
from typing import Dict, List, Optional


class _Probe:
    """A value that no option accepts: the validator's message then states what is valid."""

    def __repr__(self):
        return '<probe>'


def docstring_args(cls) -> Dict[str, str]:
    """Option name -> description from the class docstring's Google-style ``Args:`` section (``a, b: text`` entries
    describe both)."""
    lines = (inspect.getdoc(cls) or '').splitlines()
    if 'Args:' not in [line.strip() for line in lines]:
        return {}
    body = lines[[line.strip() for line in lines].index('Args:') + 1:]
    indent = None
    entries, names = {}, None
    for line in body:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break                       # the next section
        head = re.match(r'^([\w, ]+?):\s*(.*)$', line.strip()) if depth == indent else None
        if head:
            names = [n.strip() for n in head.group(1).split(',')]
            for n in names:
                entries[n] = head.group(2).strip()
        elif names:
            for n in names:
                entries[n] += ' ' + line.strip()
    return entries


def describe_option(name: str, described: Dict[str, str]) -> str:
    """The option's own entry, else the entry that mentions it (``name``)."""
    if name in described:
        return described[name]
    other = next((k for k, v in described.items() if f'``{name}``' in v), None)
    return f'see {other}: {described[other]}' if other else ''


TRIAL_VALUES = (8, 0.5)     # tried for options without a default when the reducer needs one of them set


def minimal_settings(cls) -> dict:
    """{} when ``cls()`` builds, else the first single option (without a default) set to a trial value that makes it
    build (e.g. Expediting needs ``cluster_grid`` or ``cluster_ratio``)."""
    try:
        cls()
        return {}
    except Exception:  # noqa: BLE001
        pass
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.default is None:
            for value in TRIAL_VALUES:
                try:
                    cls(**{p.name: value})
                    return {p.name: value}
                except Exception:  # noqa: BLE001
                    continue
    return {}


def valid_values(cls, name: str, base: Optional[dict] = None) -> Optional[str]:
    """What the reducer's validator accepts for option ``name`` (its message for an unacceptable value, the other
    options at ``base``), or None when the message does not state it for this option alone."""
    settings = {k: v for k, v in (base or {}).items() if k != name}
    try:
        cls(**settings, **{name: _Probe()})
    except Exception as e:  # noqa: BLE001 - any validator error is read for its 'must be' clause
        found = re.match(rf'^{re.escape(name)}(?:\[\d+\])? must (?:be )?(.*?), got <probe>', str(e))
        return found.group(1) if found else None
    return None


def reducer_options(cls) -> List[dict]:
    """[{name, default, valid, description}] in signature order."""
    described = docstring_args(cls)
    base = minimal_settings(cls)
    options = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        default = 'required' if p.default is p.empty else repr(p.default)
        options.append(dict(name=p.name, default=default, valid=valid_values(cls, p.name, base) or '-',
                            description=describe_option(p.name, described)))
    return options


def capabilities(cls) -> str:
    """The declared capabilities (the annotated class attributes of ``TokenReducer``) at their class values; some
    instances change them with their options (e.g. ``needs_importance`` for an attention ranking)."""
    from mmtokred.reducers import TokenReducer
    names = [n for n in getattr(TokenReducer, '__annotations__', {}) if n != 'enabled']
    return ', '.join(f'{n}={getattr(cls, n)!r}' for n in names if hasattr(cls, n))


def summary_line(cls) -> str:
    """The first line of the class docstring, or of its module's when the class docstring starts with Args."""
    for doc in (inspect.getdoc(cls), inspect.getdoc(sys.modules.get(cls.__module__))):
        first = (doc or '').strip().split('\n')[0]
        if first and not first.startswith('Args'):
            return first
    return ''


def describe(name: str, cls, markdown: bool = False) -> str:
    summary = summary_line(cls)
    caps = capabilities(cls)
    options = reducer_options(cls)
    if markdown:
        lines = [f'### `{name}`', '', summary + (f' (declared capabilities: {caps})' if caps else ''), '',
                 '| option | default | valid | description |', '|---|---|---|---|']
        lines += [f"| `{o['name']}` | `{o['default']}` | {o['valid']} | {o['description']} |" for o in options]
        return '\n'.join(lines) + '\n'
    lines = [f"{name}: {summary}"] + ([f'  declared capabilities: {caps}'] if caps else [])
    for o in options:
        lines.append(f"  {o['name']} = {o['default']}    valid: {o['valid']}")
        if o['description']:
            lines.append(f"      {o['description']}")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> str:
    from mmtokred.reducers import REDUCERS
    p = argparse.ArgumentParser(prog='python -m mmtokred.list',
                                description='the registered reducers, their options, defaults and valid values')
    p.add_argument('names', nargs='*', help=f'reducers to show (default: all of {sorted(REDUCERS)})')
    p.add_argument('--markdown', action='store_true', help='Markdown tables instead of plain text')
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in REDUCERS]
    if unknown:
        p.error(f'unknown reducer {", ".join(unknown)}; registered: {", ".join(sorted(REDUCERS))}')
    text = '\n'.join(describe(n, REDUCERS[n], args.markdown) for n in (args.names or sorted(REDUCERS)))
    print(text, end='')
    return text


if __name__ == '__main__':
    sys.exit(main() and 0)
