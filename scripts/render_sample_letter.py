#!/usr/bin/env python3
"""Render a sample hybrid letter (Kazakh + Russian) and write page 1 as a PNG.

Usage: ``python scripts/render_sample_letter.py [--pdf out.pdf] [--png docs/hybrid-sample-letter.png]``

The PNG (100 dpi, via poppler's ``pdftoppm``) shows the window outline as a dashed
proof mark; production print files never carry it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from esam_mail.services.hybrid.address import parse_letter
from esam_mail.services.hybrid.render import RenderOptions, render_letter

SAMPLE = """\
Кому: Серікбаев Асқар Нұрланұлы
Улица: ул. Абая
Дом: 12А
Кв.: 5
Населённый пункт: Алматы
Индекс: A01P3K4
---
Құрметті Асқар Нұрланұлы!

Сізге Қазпоштаның гибридтік пошта қызметі арқылы хат жіберіп отырмын. Бұл хат электрондық пошта арқылы қабылданып, басып шығарылды және конвертке салынды. Әрбір хаттың өз трек-нөмірі бар, оны сайттан немесе мобильді қосымшадан тексеруге болады. Қазақ әріптері: ә ғ қ ң ө ұ ү һ і.

Уважаемый Аскар Нурланович!

Направляю вам это письмо через сервис гибридной почты Казпочты. Письмо принято по электронной почте, напечатано на производственном участке и вложено в конверт с окном. Отслеживать его можно по трек-номеру, указанному справа от адреса.

С уважением,
Ахметова Әлия Серікқызы
"""


def main(argv: list[str] | None = None) -> int:
    """Render the sample; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", type=Path, default=Path("docs/hybrid-sample-letter.png"))
    ap.add_argument("--pdf", type=Path, default=None, help="also keep the PDF here")
    ap.add_argument("--dpi", type=int, default=100)
    args = ap.parse_args(argv)
    if shutil.which("pdftoppm") is None:
        print("pdftoppm not found; install poppler-utils", file=sys.stderr)
        return 1
    parsed = parse_letter(SAMPLE)
    rendered = render_letter(
        parsed.address, parsed.text, tracking_number="RR123456785KZ",
        sender_line="Ахметова Ә. С., ул. Сатпаева 22, кв. 1, Астана, Z05T3E0",
        subject="Гибридтік хат / Гибридное письмо",
        options=RenderOptions(draw_window_outline=True, invariant=True),
    )
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "sample.pdf"
        pdf.write_bytes(rendered.pdf)
        if args.pdf:
            shutil.copyfile(pdf, args.pdf)
        stem = Path(tmp) / "page"
        subprocess.run(
            ["pdftoppm", "-png", "-r", str(args.dpi), "-f", "1", "-l", "1", "-singlefile",
             str(pdf), str(stem)],
            check=True,
        )
        args.png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stem.with_suffix(".png"), args.png)
    print(f"{args.png}: page 1 of {rendered.pages}, sha256 {rendered.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
