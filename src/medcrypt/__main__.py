"""``python -m medcrypt ...`` is the ``medcrypt`` command."""

from medcrypt.cli import main

main(prog_name="medcrypt")
