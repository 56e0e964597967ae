"""The FAQ pages' phrases: ``faq.<key>`` in ``gpubench/report/catalogue.toml`` (en and zh).

Terms from the catalogue's glossary (:mod:`gpubench.report.i18n`): 串行, 多线程,
多进程（单设备）, 显存 on GPUs and 常驻内存 on CPU slots, 工作进程, 批大小, 加速比.
"""

from __future__ import annotations

from gpubench.report.i18n import text


def faq_text(key: str, lang: str, **values: object) -> str:
    """The FAQ phrase ``key`` (catalogue key ``faq.<key>``) in ``lang``."""
    return text(f"faq.{key}", lang, **values)
