"""Rendering: terminal and markdown tables, plots, report pages and their en/zh text."""
