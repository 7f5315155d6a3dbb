"""Front ends: the ``bioreason`` command (one module per subcommand) and the Gradio demo. They only compose the
library; shared option definitions live in ``options.py`` and output writers in ``writers.py``."""
