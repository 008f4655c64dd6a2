"""``python -m worker.cli``: how ``campaigns up``, the demo and the tests start each component."""

from worker.cli import main

main()
