"""python -m esam_mail -> the esam command."""

from esam_mail.cli import main

raise SystemExit(main())
