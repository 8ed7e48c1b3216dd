"""Stage 3, the gallery: the sweep folder in, a static site in <sweep>/gallery/ out.

Reads manifest.json, sweep.toml and each trial's status/params/config/metrics/summary files and
artifacts (every field may be missing or malformed); imports neither torch nor Ray. Modules:
site (read, render templates, swap the site in atomically), format (metric names, titles,
number formats, image attributes), index (index.html's data), pages (run and compare pages),
plots (every chart).
"""
