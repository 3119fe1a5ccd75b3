"""Fakes for testing code that uses greenflow, on machines without what the real thing needs.

Public and supported: import them in your own tests (``from greenflow.testing.fake_nvml import FakeNvml,
FakeGpu``). Nothing in greenflow's runtime imports this package, so the test-only dependencies they use
(``unittest.mock``) never load in a task or a worker.

* :mod:`greenflow.testing.fake_nvml`: a programmable ``pynvml`` (GPUs with power traces, energy
  counters, unsupported calls, MIG slices) for the meter, without a GPU. Needs ``nvidia-ml-py``.
"""
