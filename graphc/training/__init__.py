"""training: the train section's settings, initialisers, optimizers, data and the training loop.

In: a compiled `Program` and a `TrainConfig`. Out: trained parameters, metrics,
checkpoints and curves in a run folder.
"""
