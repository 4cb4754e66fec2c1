"""popdiff_jax: functional JAX models of information diffusion and social-media popularity."""

from popdiff_jax._errors import DataError

__all__ = ["DataError"]
__version__ = "0.1.0"
