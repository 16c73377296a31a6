"""The process on a hospital host: schedules collectors, spools and pushes samples (issue 3)."""
