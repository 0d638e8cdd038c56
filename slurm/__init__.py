"""Submitting recipes to Slurm with submitit: site file, job class, sweeps."""
