"""Task data: the built-in generator, download of raw splits, validation and tokenization."""
