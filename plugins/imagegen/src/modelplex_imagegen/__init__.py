"""modelplex-imagegen: image generation with DCGAN, BigGAN-deep, StyleGAN2 and VAEs.

The entry point is :mod:`modelplex_imagegen.plugin`; the networks (:mod:`.dcgan`,
:mod:`.biggan`, :mod:`.stylegan2`, :mod:`.vae`) import torch and are loaded by the factories.
"""
