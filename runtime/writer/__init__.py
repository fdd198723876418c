"""The DSPy side: a language model routed through the Limiter, the writer program, platform limits,
the metric, the optimizers, and the store of compiled programs."""
