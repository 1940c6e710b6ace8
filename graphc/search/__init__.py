"""Hyperparameter search: search spaces in .nn files filled in per trial, trials run by the trainer on Optuna."""
