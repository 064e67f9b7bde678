"""Uploads as the API takes them: the body streamed and decoded (`streams`, `body`), the
process's upload slots (`slots`), the answers (`receipts`) and waiting for a run (`wait`)."""
