"""``gpubench faq``: the FAQ pages FL users keep, written from measurements.

:mod:`.plan` runs the fixed measuring plan, :mod:`.inputs` decides which results answer which
question (also for ``--from`` files), :mod:`.verdicts` gives each belief its verdict from a 95%
interval, :mod:`.memory` the memory answer. Only :mod:`.plan` needs torch; the pages are in
``gpubench.report.faq_page``.
"""
