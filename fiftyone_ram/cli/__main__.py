"""``python -m fiftyone_ram.cli``: the same command line as the ``fiftyone-ram`` script."""

from fiftyone_ram.cli import main

main()
