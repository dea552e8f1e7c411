"""The ``esam`` command: one entry point, subcommands for sysadmins and post offices.

Exit codes: 0 ok, 1 failure, 2 bad input (the message names the field),
78 configuration problems (EX_CONFIG), 3 not found.

Messages, prompts and --help texts come from the ``cli`` gettext domain
(esam_mail/locale/{kk,ru}/LC_MESSAGES/cli.po) in the language ``--lang``,
``$ESAM_LANG`` or the locale chooses (:func:`commands.cli_language`); JSON output,
ids and exit codes are the same in every language.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable

from esam_mail import __version__
from esam_mail.cli import commands
from esam_mail.cli._i18n import _, language_option, set_language

EX_USAGE = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="esam",
        description=_("esam_mail: SMTP/IMAP server of the unified system of electronic subscriber mailboxes."),
    )
    p.add_argument("-c", "--config", help=_("TOML config file (default: $ESAM_CONFIG, else built-in defaults)"))
    p.add_argument("--lang", choices=["kk", "ru", "en"], type=str.lower,
                   help=_("language of messages (default: $ESAM_LANG, else the locale: LC_ALL, LC_MESSAGES, "
                          "LANG, else English)"))
    p.add_argument("--version", action="version", version=f"esam_mail {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Every module of this package may register subcommands with @commands.command.
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    for register in commands.REGISTRY:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # --lang first: the parser's --help texts and refusals are in that language too
    set_language(language_option(argv))
    try:
        args = parser().parse_args(argv)
        # Mail, the directory database, keys and logs are nobody else's business (R12):
        # everything esam creates is private to its user (0600 files, 0700 folders).
        os.umask(0o077)
        func: Callable[[argparse.Namespace], int] = args.func
        try:
            return func(args)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
    finally:
        set_language(None)  # in-process callers (tests) start from the environment again


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
