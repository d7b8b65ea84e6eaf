"""The option file itself, read before BasicSR reads it.

BasicSR's ``parse_options`` opens the ``-opt`` file and hands it to PyYAML: a missing file, an empty one, one
that is not a mapping, a YAML syntax error or a tab in the indentation each end in a traceback from inside
BasicSR or PyYAML (an empty file as ``TypeError: 'NoneType' object does not support item assignment``), and a
key written twice is silently resolved to its last value, so a run can train with settings its author did not
mean. :func:`check_option_file` finds each of these first and names it in one line that starts with the file
(and line and column, where YAML knows them).

The file is composed, not constructed (PyYAML's node tree carries the positions, and composing runs none of the
tags BasicSR's loader would construct), so this never decides what a value means: BasicSR still loads it.
"""
import os
import re

import yaml

from mclir_basicsr.preflight import PreflightError

MERGE_KEY = '<<'  # YAML's merge key may repeat by design (<<: *a then <<: *b)
MODEL_TYPE = re.compile(r'^model_type\s*:\s*[\'"]?([\w.-]+)', re.M)
EXAMPLE = 'name: ..., model_type: ..., network_g: {...}'


def option_path(argv):
    """The value of ``-opt`` (or ``--opt``) on a command line as BasicSR's argparse reads it, or None."""
    for i, arg in enumerate(argv):
        for flag in ('-opt', '--opt'):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + '='):
                return arg[len(flag) + 1:]
    return None


def read_text(path):
    """The option file's text; PreflightError when it is missing, a folder or not text."""
    if not os.path.exists(path):
        raise PreflightError(f'{path}: no such option file (-opt expects the path of a YAML option file)')
    if os.path.isdir(path):
        raise PreflightError(f'{path}: is a folder (-opt expects the path of a YAML option file)')
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise PreflightError(f'{path}: not a text file (UTF-8 expected; byte {e.start}: {e.reason})') from None
    except OSError as e:
        raise PreflightError(f'{path}: cannot be read ({e.strerror or e})') from None


def model_type(text):
    """The top-level ``model_type`` written in an option file's text (found even where the file does not parse),
    or None."""
    found = MODEL_TYPE.search(text)
    return found.group(1) if found else None


def _syntax_error(path, text, error):
    mark = error.problem_mark
    if mark is None:
        return PreflightError(f'{path}: not valid YAML ({error})')
    where = f'{path}:{mark.line + 1}:{mark.column + 1}'
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ''
    indent = line[:len(line) - len(line.lstrip(' \t'))]
    if '\t' in indent or (error.problem or '').startswith("found character '\\t'"):
        return PreflightError(f'{where}: a tab in the indentation (YAML indents with spaces only)')
    context = ''
    if error.context and error.context_mark is not None:
        context = f' ({error.context} that starts on line {error.context_mark.line + 1})'
    elif error.context:
        context = f' ({error.context})'
    return PreflightError(f'{where}: not valid YAML: {error.problem}{context}')


def _duplicate_keys(path, node, prefix=''):
    """PreflightError for the first key written twice in one mapping (depth first), or None."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_keys(path, item, f'{prefix}[{i}]')
            if found:
                return found
    if not isinstance(node, yaml.MappingNode):
        return None
    seen = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        full = f'{prefix}.{name}' if prefix else str(name)
        if name is not None and name != MERGE_KEY:
            if name in seen:
                return PreflightError(f'{path}:{key.start_mark.line + 1}: {full} is given twice (lines '
                                      f'{seen[name] + 1} and {key.start_mark.line + 1}); YAML would keep only '
                                      'the last: delete one')
            seen[name] = key.start_mark.line
        found = _duplicate_keys(path, value, full)
        if found:
            return found
    return None


# --------------------------------------------------------------------------- what parse_options reads
# Sections that are mappings wherever given; null is left to the later checks, which say whether it is needed.
MAPPINGS = {'network_g': '{type: EDSR, ...}', 'network_d': '{type: VGGStyleDiscriminator, ...}',
            'datasets': '{train: {...}, val: {...}}', 'path': '{pretrain_network_g: null, resume_state: null}',
            'train': '{total_iter: ..., optim_g: {...}}', 'val': '{val_freq: ..., save_img: false, metrics: {...}}',
            'logger': '{print_freq: 100, save_checkpoint_freq: 5000, use_tb_logger: true}',
            'dist_params': '{backend: nccl, port: 29500}'}
# What BasicSR's parse_options itself reads (a KeyError or a TypeError from inside it otherwise).
REQUIRED = {'name': 'a name for the run (its folder under experiments/ or results/)',
            'num_gpu': 'the number of GPUs: 0 for the CPU, or auto',
            'datasets': f'a mapping, e.g. {MAPPINGS["datasets"]}', 'path': f'a mapping, e.g. {MAPPINGS["path"]}'}
INT_TAG, NULL_TAG, STR_TAG = 'tag:yaml.org,2002:int', 'tag:yaml.org,2002:null', 'tag:yaml.org,2002:str'


def _shown(node):
    if isinstance(node, yaml.MappingNode):
        return 'a mapping'
    if isinstance(node, yaml.SequenceNode):
        return 'a list'
    return repr(node.value) if node.tag == STR_TAG else node.value or 'null'


def _fail(path, key, node, expected, line):
    return PreflightError(f'{key}: expected {expected}, got {_shown(node)} ({path}:{line + 1})')


def _check_paths(path, prefix, section, read):
    """The keys of ``section`` for which ``read(key)`` is true are paths that BasicSR's ``parse_options`` expands
    with ``os.path.expanduser``: null or a string (a number or a list is a TypeError from inside it)."""
    for key, node in section.value if isinstance(section, yaml.MappingNode) else ():
        if isinstance(key, yaml.ScalarNode) and read(key.value) and node.tag not in (STR_TAG, NULL_TAG):
            raise _fail(path, f'{prefix}.{key.value}', node, 'a path (or null)', key.start_mark.line)


def _check_top_level(path, root):
    """What BasicSR's ``parse_options`` reads before the add-on's checks can run: the sections a run reads given as
    mappings, and ``name``, ``num_gpu``, ``manual_seed``, ``datasets`` (phases, data roots) and ``path`` (the files
    a run loads) as it needs them."""
    top = {key.value: (value, key.start_mark.line) for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    for key, expected in REQUIRED.items():
        if key not in top:
            raise PreflightError(f'{key}: not set (expected {expected}; BasicSR reads it) ({path})')
    for key, (node, line) in top.items():
        if key in MAPPINGS and not isinstance(node, yaml.MappingNode):
            if node.tag != NULL_TAG or key in REQUIRED:
                raise _fail(path, key, node, f'a mapping, e.g. {MAPPINGS[key]}', line)
    for phase, node in top['datasets'][0].value:
        if phase.tag != STR_TAG:
            raise _fail(path, f'datasets.{phase.value}', phase, 'a phase name as the key (train, val, val_1, '
                        'test_1, ...)', phase.start_mark.line)
        if not isinstance(node, yaml.MappingNode):
            raise _fail(path, f'datasets.{phase.value}', node, 'a mapping, e.g. {type: PairedImageDataset, ...}',
                        phase.start_mark.line)
        _check_paths(path, f'datasets.{phase.value}', node, lambda key: key in ('dataroot_gt', 'dataroot_lq'))
    _check_paths(path, 'path', top['path'][0], lambda key: 'resume_state' in key or 'pretrain_network' in key)
    (name, line), (num_gpu, gpu_line) = top['name'], top['num_gpu']
    if not isinstance(name, yaml.ScalarNode) or name.tag != STR_TAG or not name.value:
        raise _fail(path, 'name', name, REQUIRED['name'] + (' in quotes' if isinstance(name, yaml.ScalarNode) and
                                                             name.tag != NULL_TAG else ''), line)
    if not isinstance(num_gpu, yaml.ScalarNode) or (num_gpu.tag != INT_TAG and num_gpu.value != 'auto') or \
            num_gpu.value.startswith('-'):
        raise _fail(path, 'num_gpu', num_gpu, 'an integer >= 0 (0: the CPU) or auto', gpu_line)
    seed, line = top.get('manual_seed', (None, 0))
    if seed is not None and not (isinstance(seed, yaml.ScalarNode) and (seed.tag == NULL_TAG or (
            seed.tag == INT_TAG and 0 <= yaml.safe_load(seed.value) < 2 ** 32))):  # numpy's and torch's range
        raise _fail(path, 'manual_seed', seed, 'an integer in [0, 2**32 - 1] or null', line)


def check_option_file(path, duplicates=True, sections=False, text=None):
    """Raise PreflightError (one line, starting with the file) when the option file at ``path`` is missing,
    unreadable, empty, not YAML, indented with a tab, not a mapping at the top, or (``duplicates``) has a key
    written twice in one mapping; with ``sections``, also when what BasicSR's ``parse_options`` reads is missing
    or of the wrong shape (that one starts with the option). ``text``: the file's text, when already read.
    Returns the file's text."""
    text = read_text(path) if text is None else text
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(path, text, e) from None
    except yaml.YAMLError as e:
        raise PreflightError(f'{path}: not valid YAML ({" ".join(str(e).split())})') from None
    if root is None:
        raise PreflightError(f'{path}: empty (expected a YAML mapping of options: {EXAMPLE})')
    if not isinstance(root, yaml.MappingNode):
        kind = 'a list' if isinstance(root, yaml.SequenceNode) else f'the value {root.value!r}'
        raise PreflightError(f'{path}:{root.start_mark.line + 1}: expected a mapping of options at the top '
                             f'({EXAMPLE}), got {kind}')
    if duplicates:
        found = _duplicate_keys(path, root)
        if found:
            raise found
    if sections:
        _check_top_level(path, root)
    return text
