"""DNA encoders: a small protocol, a decorator registry, one file per encoder.

``build_encoder(name, config)`` gives an ``nn.Module`` mapping token ids to
hidden states ``(B, L, H)``; ``build_tokenizer(name, config)`` gives the
matching torch-free tokenizer. Built-ins: ``tiny`` (random, for tests),
``hyena`` (native HyenaDNA port), ``nucleotide-transformer`` (ESM via
transformers), ``evo2`` (optional package, lazy import).
"""

from bioreason.dna_encoders.base import (  # noqa: F401
    ENCODERS,
    DNAEncoder,
    DNATokenizer,
    build_encoder,
    build_tokenizer,
    clean_sequence,
    get_spec,
    pasted_sequence,
    register,
)
