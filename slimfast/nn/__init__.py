"""Torch layers for training and the torch engine: GDN, the entropy bottleneck and the
slimmable layers. Only :mod:`slimfast.models` builds networks from them."""
