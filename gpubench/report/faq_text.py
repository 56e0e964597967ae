"""The FAQ pages' phrases: ``faq.<key>`` in ``gpubench/report/catalogue.toml`` (en and zh).

Terms as Chinese FL users write them: 串行, 多线程, 多进程, 显存, 加速比, batch size.
"""

from __future__ import annotations

from gpubench.report.i18n import text


def faq_text(key: str, lang: str, **values: object) -> str:
    """The FAQ phrase ``key`` (catalogue key ``faq.<key>``) in ``lang``."""
    return text(f"faq.{key}", lang, **values)
