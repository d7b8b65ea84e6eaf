"""The house rule, checked: imports of the package run one way (no circle, imports inside functions and the
package __init__ files an import runs counted)."""
import ast
import glob
import os

from helpers import REPO


def _sources():
    for path in sorted(glob.glob(os.path.join(REPO, 'mclir_basicsr', '**', '*.py'), recursive=True)):
        with open(path, encoding='utf-8') as f:
            yield os.path.relpath(path, REPO), f.read()


def _package_imports():
    """{module: modules of the package it imports}, every import statement counted (also inside functions), and
    the parent packages an import of a.b.c runs (except the package's own root and the importer's parents)."""
    modules = {}
    for path, text in _sources():
        name = path[:-3].replace(os.sep, '.')
        modules[name[:-len('.__init__')] if name.endswith('.__init__') else name] = (path, text)
    edges = {}
    for name, (path, text) in modules.items():
        base = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
        found = set()
        for node in ast.walk(ast.parse(text)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ''
                if node.level:
                    mod = '.'.join(base.split('.')[:len(base.split('.')) - node.level + 1] + ([mod] if mod else []))
                targets = [mod] + [f'{mod}.{a.name}' for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit('.', 1)[0] if '.' in target else ''
                if target and target != name and not name.startswith(target + '.'):
                    found.add(target)
                    parent = target
                    while '.' in parent:
                        parent = parent.rsplit('.', 1)[0]
                        if parent != 'mclir_basicsr' and parent != name and not name.startswith(parent + '.'):
                            found.add(parent)
        edges[name] = found
    return edges


def _circle_from(start, edges):
    """A path start -> ... -> start through the import graph, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_imports_run_one_way():
    edges = _package_imports()
    circles = [c for c in (_circle_from(m, edges) for m in sorted(edges)) if c]
    assert not circles, circles[0]
    assert 'mclir_basicsr.runs' in edges['mclir_basicsr._autoload']  # seen inside a function, where the hook has it


def test_option_code_size_counts_code_not_prose(monkeypatch):
    """scripts/dev/option_code_size.py (the size the docs report): docstrings, comments and blank lines are not
    code; a line holding only a string (a field's description) is code but not logic."""
    from helpers import load_script
    size = load_script('dev/option_code_size')
    source = ('"""Module doc."""\n'
              'import os  # a comment\n'
              '\n'
              'def f(x):\n'
              '    """Doc\n    on two lines."""\n'
              '    return Field(1, description=(\n'
              "        'prose only'\n"
              "        'more prose'))\n")
    assert size.count(source) == (5, 3)  # code: import, def, return, 2 prose lines; logic: the first three
    files = [f for f in size.FILES if os.path.exists(os.path.join(REPO, f))]
    assert 'mclir_basicsr/options.py' in files and 'mclir_basicsr/preflight/sections.py' in files
    monkeypatch.chdir(REPO)  # '.': the working tree, as the files are on disk
    with open('mclir_basicsr/options.py', encoding='utf-8') as f:
        assert size.at_revision('.', 'mclir_basicsr/options.py') == f.read()
    assert size.at_revision('.', 'mclir_basicsr/no_such_module.py') is None
