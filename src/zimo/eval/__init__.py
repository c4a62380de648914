"""Evaluation: compare systems on a project's test split and write a report a team can decide on.

Modules (import what you need; nothing heavy is imported here):

- :mod:`zimo.eval.metrics` — label (accuracy, macro-F1, per-class F1, confusion, ECE +
  reliability bins), extract (JSON validity, field exact match / F1) and generate (chrF, ROUGE-L
  with CJK-aware tokens, MiniLM embedding similarity) metrics, each with a bootstrap CI;
- :mod:`zimo.eval.bootstrap` — seeded, vectorised percentile bootstrap and paired differences;
- :mod:`zimo.eval.judge` — pairwise LLM-judge win rates with position swapping;
- :mod:`zimo.eval.cost` — cost per 1k requests, latency p50/p95, tokens/s, stated assumptions;
- :mod:`zimo.eval.generate_eval` — the generate/chat evaluation and local batched generation;
- :mod:`zimo.eval.html` / :mod:`zimo.eval.generate_report` — self-contained HTML reports;
- :mod:`zimo.eval.config` — the ``eval:`` section of ``zimo.yaml``;
- :mod:`zimo.eval.label_eval` / :mod:`zimo.eval.report` — the label-task evaluation and report.
"""
