"""Platforms' DSA transparency reports (Art. 15, 24 and 42): the files the
`transparency-reports` source archives, recognised as reports and their versions, with the
text of their PDFs and the cells of their harmonised tables (Implementing Regulation (EU)
2024/2835). ``parse`` turns a run's snapshots into rows, ``queries`` lists, shows and diffs.
"""
