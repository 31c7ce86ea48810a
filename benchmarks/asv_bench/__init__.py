"""asv benchmark suite of numrnn (configuration: ``asv.conf.json`` at the repo root).

Modules: ``bench_kernels`` (forward and backward per cell), ``bench_layers``
(Bidirectional and masking overhead), ``bench_estimators`` (fit, predict,
peak memory of fit), ``bench_streaming`` (one step at a time, batch 1) and
``bench_compile`` (cold compile and warm-cache load, in fresh processes).
Every ``setup`` warms its kernels up so that no ``time_*`` measures
compilation.
"""
