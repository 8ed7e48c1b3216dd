"""Stage 2, post-processing: one trial folder in, its latents, pictures and metrics out.

Reads only what training wrote into <sweep>/trials/<trial>/ (config.json, params.json, model.pt,
metrics.jsonl, status.json) and writes latents.npz, artifacts/*.png and, last, summary.json.
Never imports the training loop or Ray at module level (Ray is used only to fan trials out as
tasks when a Ray session is already up). Modules: sweep (which trials, skip key, progress),
trial (one trial's timed steps), metrics (ELBO/IWAE/FID/coverage), classifier (the reference
CNN), render (the PNGs).
"""
