"""Selection among sampled candidates (MBR)."""
