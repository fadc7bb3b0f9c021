"""Replaying stored traffic through rules: what the rules saw (``record``), reading it back
(``load``), the diff of two rule sets (``diff``), its text (``text``), the shell (``service``)."""
