"""``python -m runbook``."""

from runbook.cli import main

raise SystemExit(main())
