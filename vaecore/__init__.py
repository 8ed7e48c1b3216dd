"""Fashion-MNIST VAE library: config, data, model, losses, training, latents, metrics, rendering."""
