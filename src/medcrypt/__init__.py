"""medcrypt: adversarial data encryption for medical image archives.

"Encryption" is the paper's word (Hu et al., 2020): this is a protective adversarial
perturbation, not cryptography. See README.md, "Threat model".
"""

from __future__ import annotations

from medcrypt.errors import MedcryptError

__all__ = ["MedcryptError", "__version__"]
__version__ = "0.1.0"
