"""Stage 3, the gallery: the sweep folder in, a static site in <sweep>/gallery/ out.

Reads manifest.json, sweep.toml and each trial's status/params/config/metrics/summary files and
artifacts (every field may be missing or malformed), through vaecore.layout; names, titles and
which way is better come from vaecore.catalog. Imports neither torch nor Ray nor the other
stages (import-linter holds it). Modules: site (read, render templates, swap the site in
atomically), format (number formats, image attributes), index (index.html's data), groups
(replicates), matrix (the sample matrix), pages (run and compare pages), plots (every chart).
"""
