"""Image-text sub-models: curate an organisation's images, train an image encoder in the
embedded text encoder's vector space (or use a local CLIP), label and search images."""
