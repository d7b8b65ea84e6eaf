"""The option reference, generated from the schema: the tables of docs/options.md (the add-on's sections, then
the parts of BasicSR's the add-on checks) and the JSON schema for editors (docs/options.schema.json).

``python -m mclir_basicsr.option_reference --write docs/options.md --json-schema docs/options.schema.json``
regenerates both; a test fails while either is stale.
"""
import argparse
import json
from typing import Optional

from mclir_basicsr.options import OFFICIAL, SECTIONS, CROptions, Negatives, SPNOptions, TrainKeys, UncertaintyOptions
from mclir_basicsr.preflight.sections import BASICSR_SECTIONS


def _fmt(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return '{' + ', '.join(f'{k}: {w}' for k, w in v.items()) + '}'
    return str(v)


def _accepted(field):
    return next((m.func.accepted for m in reversed(field.metadata) if hasattr(getattr(m, 'func', None), 'accepted')),
                'any')


def _rows(sections):
    for path, model in sections.items():
        for key, field in model.model_fields.items():
            default = 'required' if field.is_required() else _fmt(field.default)
            yield f'| `{path}.{key}` | `{default}` | {_accepted(field)} | {field.description or ""} |'


def markdown_table():
    """The add-on's options (and the official fork's keys it reads)."""
    rows = ['| option | default | accepted | meaning |', '| --- | --- | --- | --- |', *_rows(SECTIONS)]
    rows += [f'| `train.{old}` | | official fork key | read as `{new}` |' for old, new in OFFICIAL.items()]
    return '\n'.join(rows) + '\n'


def basicsr_table():
    """The keys of BasicSR's own sections that the add-on checks before a run of its models starts."""
    return '\n'.join(['| option | default | accepted | meaning |', '| --- | --- | --- | --- |',
                      *_rows(BASICSR_SECTIONS)]) + '\n'


def json_schema():
    """A JSON schema of the keys the add-on reads, for editors that check YAML as it is typed (e.g. VS Code's YAML
    extension with ``# yaml-language-server: $schema=...``). Only ``train`` is described, and it stays open: the
    rest of an option file, and of ``train``, is BasicSR's, whose required keys depend on the run."""
    train = TrainKeys.model_json_schema()
    train['additionalProperties'] = True
    for key, model in (('negatives', Negatives), ('spn_opt', SPNOptions), ('cr_opt', CROptions),
                       ('uncertainty_opt', UncertaintyOptions)):
        train['properties'][key] = {'anyOf': [model.model_json_schema(), {'type': 'null'}]}
    return {'$schema': 'https://json-schema.org/draft/2020-12/schema', 'title': 'mclir-basicsr option file',
            'description': 'The keys mclir-basicsr reads (docs/options.md); everything else is BasicSR\'s.',
            'type': 'object', 'properties': {'train': train}}


TABLES = {'options': markdown_table, 'basicsr': basicsr_table}  # marker name -> the table between its markers


def write_reference(path):
    """Replace the table between each pair of markers (``<!-- options:begin -->`` ...) of the page ``path``."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    for name, table in TABLES.items():
        begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
        head, rest = text.split(begin, 1)
        text = f'{head}{begin}\n{table()}{end}{rest.split(end, 1)[1]}'
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def main(argv: Optional[list] = None):
    """Print the option tables; ``--write docs/options.md``: update that page; ``--json-schema
    docs/options.schema.json``: the JSON schema for editors."""
    parser = argparse.ArgumentParser(prog='python -m mclir_basicsr.option_reference', description=main.__doc__)
    parser.add_argument('--write', metavar='PAGE', help='rewrite the tables between the markers of PAGE')
    parser.add_argument('--json-schema', metavar='FILE', help='write the JSON schema of the add-on\'s keys to FILE')
    args = parser.parse_args(argv)
    if args.json_schema:
        with open(args.json_schema, 'w', encoding='utf-8') as f:
            f.write(json.dumps(json_schema(), indent=1) + '\n')
    if args.write:
        write_reference(args.write)
    elif not args.json_schema:
        print(markdown_table() + '\n' + basicsr_table(), end='')


if __name__ == '__main__':
    main()
