"""The parts of ``scripts/dev/bench_step.py`` (which says what the bench measures and how); it exports the pieces
tests/test_bench_step.py checks one by one.

* ``options``     the command line, the --arch presets, variant names and the BasicSR option dict of each;
* ``published``   the published code's training step, bound to the ``published_kN`` rows' models;
* ``measure``     the worker processes' timer, memory readings and random batches;
* ``components``  the floor's parts, timed in a worker of their own;
* ``jobs``        the worker side: set-up, a variant's model, the loop that answers the parent;
* ``workers``     the parent side: the worker processes and the interleaved timing rounds;
* ``floors``      medians, the floors and the per-round ratios;
* ``report``      the markdown table and the JSON/markdown outputs.
"""
from bench.floors import add_ratios, summarize
from bench.measure import random_batches
from bench.options import (
    DEFAULT_LAYERS,
    DEFAULT_VARIANTS,
    build_parser,
    configure,
    make_options,
    network_options,
    parse_layers,
    parse_variant,
    spn_options,
)
from bench.published import published_neg_loss, published_step
from bench.report import markdown_floors

__all__ = ['DEFAULT_LAYERS', 'DEFAULT_VARIANTS', 'add_ratios', 'build_parser', 'configure', 'make_options',
           'markdown_floors', 'network_options', 'parse_layers', 'parse_variant', 'published_neg_loss',
           'published_step', 'random_batches', 'spn_options', 'summarize']
