"""Clinician-facing reports (`fusion report`): per participant and per cohort, as
self-contained HTML and a PDF printed from it with headless Chromium. See `fusion.report.build`."""
