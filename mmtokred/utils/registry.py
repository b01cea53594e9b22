"""The one registry mechanism of the library (reducers, hosts): a name -> object mapping filled at import by
decorators, whose lookups fail with the list of registered names. Pure Python (the reducers use it)."""


class Registry(dict):
    """``name -> object``; ``what`` names the kind of object in messages (e.g. 'reducer')."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, obj=None, name=None):
        """Register ``obj`` under ``name`` (default: its ``__name__``, or its ``name`` attribute); usable as a
        decorator. A second object under the same name is an error."""
        if obj is None:
            return lambda o: self.register(o, name)
        key = name or getattr(obj, '__name__', None) or obj.name
        if key in self:
            raise KeyError(f'{self.what} {key!r} is already registered')
        self[key] = obj
        return obj

    def get_or_raise(self, name):
        if name not in self:
            raise KeyError(f'unknown {self.what} type {name!r}; registered: {sorted(self)}')
        return self[name]

    def __repr__(self):
        return f'Registry({self.what!r}: {sorted(self)})'
