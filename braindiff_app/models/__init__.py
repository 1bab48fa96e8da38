"""Models: VDVAE, CLIP features, dual-guided image-to-image, demo model builders."""
