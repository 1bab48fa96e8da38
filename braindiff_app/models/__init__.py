"""Models: VDVAE, CLIP features, Versatile Diffusion loading and dual-guided image-to-image."""
