"""Torch building blocks of mmAAVI; they see tensors only, never AnnData."""

from .decoders import Decoders, HybridDecoder
from .discriminator import BatchDiscriminator, reverse_gradient
from .encoders import AttentionFusion, ModalityEncoders
from .graph import GraphEncoder
from .latent import MixtureLatent
from .likelihoods import ZeroInflatedNegativeBinomial, build_likelihood, nb_from_mean

__all__ = [
    "AttentionFusion",
    "BatchDiscriminator",
    "Decoders",
    "GraphEncoder",
    "HybridDecoder",
    "MixtureLatent",
    "ModalityEncoders",
    "ZeroInflatedNegativeBinomial",
    "build_likelihood",
    "nb_from_mean",
    "reverse_gradient",
]
