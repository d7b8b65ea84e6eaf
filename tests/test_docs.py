"""The user documentation holds together: a short README whose links (and the pages' links to each other)
reach files and headings that exist, option docs that cite existing headings, an option table whose rows
all have four cells, product-only wording, and the full license text."""
import glob
import os
import re

import pytest

from mclir_basicsr import option_reference
from mclir_basicsr import options as O

from helpers import REPO

README = os.path.join(REPO, 'README.md')
PAGES = sorted(glob.glob(os.path.join(REPO, 'docs', '**', '*.md'), recursive=True))
LINK = re.compile(r'\]\(([^)\s]+)\)')
CITED = re.compile(r'(README|docs/[\w/]+\.md),? "([^"]+)"')  # (README, "Heading") or (docs/x.md, "Heading")


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def _prose(text):
    """The text outside fenced code blocks."""
    return ''.join(part for i, part in enumerate(re.split(r'^```.*$', text, flags=re.M)) if i % 2 == 0)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def headings(path):
    return [line.lstrip('#').strip() for line in _prose(_read(path)).splitlines() if re.match(r'#{1,6} ', line)]


def test_readme_is_at_most_300_lines():
    with open(README, encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert len(lines) <= 300, f'README.md has {len(lines)} lines; move detail to docs/'


def test_readme_keeps_the_set_up_commands_ci_runs():
    first = [line for line in _read(README).splitlines() if re.match(r'^python3 -m venv .*pytest', line)]
    assert first and 'ruff check .' in first[0], '.ci/run reads this command from README.md'


@pytest.mark.parametrize('path', [README] + PAGES, ids=lambda p: os.path.relpath(p, REPO))
def test_relative_links_reach_files_and_headings(path):
    broken = []
    for target in LINK.findall(_prose(_read(path))):
        if re.match(r'[a-z]+:', target):
            continue
        file, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            broken.append(f'{target}: no file {os.path.relpath(dest, REPO)}')
        elif anchor and dest.endswith('.md') and anchor not in {slug(h) for h in headings(dest)}:
            broken.append(f'{target}: no heading #{anchor} in {os.path.relpath(dest, REPO)}')
    assert not broken, broken


def test_readme_links_every_docs_page():
    linked = {os.path.normpath(os.path.join(REPO, t.partition('#')[0])) for t in LINK.findall(_read(README))}
    top = [p for p in PAGES if os.path.dirname(p) == os.path.join(REPO, 'docs')]
    assert top and not [os.path.relpath(p, REPO) for p in top if p not in linked]


def test_option_docs_cite_headings_that_exist():
    cited = [(page, title) for model in O.SECTIONS.values() for field in model.model_fields.values()
             for page, title in CITED.findall(field.description)]
    assert cited
    for page, title in cited:
        page = 'README.md' if page == 'README' else page
        assert os.path.isfile(os.path.join(REPO, page)), page
        assert title in headings(os.path.join(REPO, page)), f'{page} has no heading "{title}"'


def test_option_table_rows_have_four_cells():
    rows = (option_reference.markdown_table() + option_reference.basicsr_table()).splitlines()
    bad = [row for row in rows if len(re.findall(r'(?<!\\)\|', row)) != 5]
    assert rows and not bad, bad


@pytest.mark.parametrize('path', [README] + PAGES, ids=lambda p: os.path.relpath(p, REPO))
def test_docs_speak_of_the_product_only(path):
    found = re.findall(r'\b(?:issues? #?\d+|sessions?|helpers?)\b(?!\.py)', _read(path), flags=re.I)
    assert not found, found


def test_license_is_the_full_apache_2_text():
    text = _read(os.path.join(REPO, 'LICENSE'))
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert '9. Accepting Warranty or Additional Liability.' in text and 'END OF TERMS AND CONDITIONS' in text
    assert text.rstrip().endswith('limitations under the License.')
