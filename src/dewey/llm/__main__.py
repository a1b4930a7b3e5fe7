"""``python -m dewey.llm``: the ``dewey-llm`` command."""

from dewey.llm._cli import main

raise SystemExit(main())
