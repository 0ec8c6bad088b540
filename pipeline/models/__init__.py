"""Model families: DiffuSeq and the paper's baselines, each behind the `Seq2Seq` interface."""
