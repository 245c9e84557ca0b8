"""How well a policy does: every policy on the same seeds against the fluid bound (``runner``), the statistics
(``stats``), the table and result files (``report``) and the figures (``plots``)."""

from .report import print_results_table, results_table, write_results
from .runner import EvaluationResult, PolicyResult, evaluate_policies, machine_description, run_policy
from .stats import bootstrap_ci, interquartile_mean, paired_comparison

__all__ = [
    "EvaluationResult",
    "PolicyResult",
    "bootstrap_ci",
    "evaluate_policies",
    "interquartile_mean",
    "machine_description",
    "paired_comparison",
    "print_results_table",
    "results_table",
    "run_policy",
    "write_results",
]
