"""DiffuSeq reproduction pipeline: data, models, training, sampling, evaluation, reports."""
