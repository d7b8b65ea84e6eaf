"""Stage tests: ``pytest -m device tests`` (tests/test_device.py), counted from its junit file."""
import os
import xml.etree.ElementTree as ET

from .where import PY


def junit_counts(path):
    """{'tests', 'passed', 'failed', 'skipped', 'failures': [...], 'skip_reasons': {reason: n}} of a junit file."""
    counts = {'tests': 0, 'passed': 0, 'failed': 0, 'skipped': 0, 'failures': [], 'skip_reasons': {}}
    for case in ET.parse(path).getroot().iter('testcase'):
        name = f'{case.get("classname", "")}::{case.get("name")}'
        counts['tests'] += 1
        bad = case.find('failure') if case.find('failure') is not None else case.find('error')
        skip = case.find('skipped')
        if bad is not None:
            counts['failed'] += 1
            counts['failures'].append(name)
        elif skip is not None:
            counts['skipped'] += 1
            reason = (skip.get('message') or '').replace('Skipped: ', '')
            counts['skip_reasons'][reason] = counts['skip_reasons'].get(reason, 0) + 1
        else:
            counts['passed'] += 1
    return counts


def stage_tests(st):
    junit = os.path.join(st.out, 'junit.xml')
    cmd = [PY, '-m', 'pytest', '-m', 'device', 'tests', '-q', '-rs', '-p', 'no:cacheprovider',
           '--continue-on-collection-errors', f'--junitxml={junit}']
    if not st.ctx['cpu'] and st.ctx.get('xdist'):
        cmd += ['-n', '4']  # the trainings are separate processes: 4 at a time on one GPU
    st.step('pytest', cmd)
    if not os.path.exists(junit):
        return
    counts = junit_counts(junit)
    st.record['numbers'] = counts
    if counts['passed'] == 0:
        st.fail('failed', 'no device test passed')
    st.record['brief'] = f'{counts["passed"]} passed, {counts["failed"]} failed, {counts["skipped"]} skipped'
