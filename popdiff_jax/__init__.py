"""popdiff_jax: functional JAX models of information diffusion and social-media popularity."""

from popdiff_jax._errors import ConfigError, DataError

__version__ = "0.2.0.dev0"
__all__ = ["ConfigError", "DataError"]
