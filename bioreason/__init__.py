"""bioreason: a DNA-language model that reasons about genomics (encoder -> pooling projector -> LLM).

Importing the package is cheap: torch and transformers load only in the modules that use them. Entry points:
``bioreason.checkpoints.load_model`` (model + processor), ``bioreason.predict.VariantPredictor``, the ``bioreason``
command (``bioreason.app.cli``). Sub-packages mapped here at install time: ``dna_encoders``, ``kegg_data``,
``training``, ``app``.
"""

__version__ = "0.1.0"
