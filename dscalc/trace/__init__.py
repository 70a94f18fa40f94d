"""Real models: the aten op registry, the meta-device tracer, model sources and their loaders (one entry per
format), per-module summaries and the separable copy of a model. Importing this package imports no torch: the
modules that run torch import it themselves."""
