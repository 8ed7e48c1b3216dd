"""Stage 2, post-processing: one trial folder in, its latents, pictures and metrics out.

Reads only what training wrote into <sweep>/trials/<trial>/ (config.json, params.json, model.pt,
metrics.jsonl, status.json, through vaecore.layout) and writes latents.npz, artifacts/*.png and,
last, summary.json. Imports neither the training modules nor Ray (a caller with a Ray session
passes process_sweep a fan-out). Modules: sweep (which trials, skip key, progress), trial
(Options and one trial's timed steps, one fit function per catalogue sampler), metrics
(ELBO/IWAE/FID/coverage), reference (cached real-data statistics), two_stage (the second-stage
VAE), classifier (the reference CNN), render and sheets (the PNGs).
"""
