"""The diffusion machinery: schedules, the forward process and loss, timestep samplers, reverse
samplers, the clamping trick and the tiled vocabulary cross-entropy (DiffuSeq §3;
docs/diffuseq.md)."""
