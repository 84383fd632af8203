"""``python -m containers_storage``: the ``containers-storage`` command."""

from .cli.main import main

raise SystemExit(main())
