"""Agentless checks over SSH (AMMS hosts)."""
