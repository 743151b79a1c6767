"""Readers and writers, one module per file format, plus layout detection (:mod:`.layouts`)."""
