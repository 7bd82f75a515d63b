"""The report builder: sweep result files in, charts, HTML, Markdown and CSV out.

Depends on the result files' schema (benchmarks.records) and on impls only for the optional
correctness check; nothing in impls or benchmarks imports this package. Output goes to
git-ignored folders (reports/out/, reports/artifacts/); reports/results/ keeps result files
committed on purpose. Run ``python -m reports build --help``.
"""
