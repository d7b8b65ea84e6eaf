"""Size of the option and check code at git revisions: lines of code, and those without prose.

    python scripts/dev/option_code_size.py [REV ...]        # default: HEAD; '.' is the working tree

A line of code is one with a token that is not a comment, a docstring or blank; "logic" leaves out the lines that
hold only prose (a string literal, alone or as ``description=``, as the option schema's documentation is written).
Files missing at a revision count 0 (modules were merged and split over time).
"""
import argparse
import ast
import io
import subprocess
import tokenize

FILES = ('mclir_basicsr/options.py', 'mclir_basicsr/option_reference.py', 'mclir_basicsr/validate.py',
         'mclir_basicsr/official_options.py', 'mclir_basicsr/ignored_options.py',
         'mclir_basicsr/preflight/sections.py', 'mclir_basicsr/preflight/optim.py',
         'mclir_basicsr/preflight/arguments.py', 'mclir_basicsr/preflight/registry.py',
         'mclir_basicsr/preflight/option_file.py')
SKIPPED = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


def _docstring_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def _prose(tokens):
    return any(t.type == tokenize.STRING for t in tokens) and all(
        t.type == tokenize.STRING or (t.type == tokenize.OP and t.string in '(),=')
        or (t.type == tokenize.NAME and t.string == 'description') for t in tokens)


def count(source):
    """(lines of code, lines of logic) of a Python source."""
    docs = _docstring_lines(ast.parse(source))
    by_line = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in SKIPPED:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if line not in docs:
                by_line.setdefault(line, []).append(token)
    return len(by_line), sum(1 for tokens in by_line.values() if not _prose(tokens))


def at_revision(rev, path):
    if rev == '.':
        try:
            with open(path, encoding='utf-8') as f:
                return f.read()
        except FileNotFoundError:
            return None
    shown = subprocess.run(['git', 'show', f'{rev}:{path}'], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('revisions', nargs='*', default=['HEAD'])
    args = parser.parse_args(argv)
    for rev in args.revisions:
        total = [0, 0]
        for path in FILES:
            source = at_revision(rev, path)
            code, logic = count(source) if source is not None else (0, 0)
            total = [total[0] + code, total[1] + logic]
            print(f'{rev}  {code:5d} {logic:5d}  {path}')
        print(f'{rev}  {total[0]:5d} {total[1]:5d}  total (code, logic)')


if __name__ == '__main__':
    main()
