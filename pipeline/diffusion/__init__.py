"""The diffusion machinery: schedules, the forward process and loss, timestep samplers, reverse
samplers and the clamping trick (DiffuSeq §3; /work/shared/spec/diffuseq.md)."""
