"""The parts of ``scripts/dev/gpu_check.py``, one idea per module, standard library only (the check starts before
anything is installed):

* :mod:`.where`: the repository, the interpreter the stages use, the step benchmark's path.
* :mod:`.procs`: child processes under a time budget, and :class:`~.procs.Stage`, one stage's record.
* :mod:`.wheel_set`: which wheels the GPU image lacks, and why (the one list), and the check that every
  declared requirement is decided.
* :mod:`.wheels`: ``--fetch-wheels`` (download / build, manifest) and the offline install ``--wheels`` runs.
* :mod:`.setup_stage`, :mod:`.tests_stage`, :mod:`.bench_stage`, :mod:`.compare_stage`: the four stages.
* :mod:`.report`: summary.json / summary.txt and the archive.
"""
