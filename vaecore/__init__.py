"""Fashion-MNIST VAE sweeps: the library.

The core: config, data, model, losses, latent, epoch, layout (the trial and sweep folders),
catalog (samplers, metrics, figures), images, runs (atomic files), plotting, cluster. The stages:
train (stage 1, the one training loop), post/ (stage 2), gallery/ (stage 3). Orchestration:
sweep (sweep file and folder), distributed and worker (all Ray code). docs/ARCHITECTURE.md is
the map and says who may import whom.
"""
