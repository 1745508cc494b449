"""The glidein: the pilot agent that joins the pool and runs matched jobs (README.md)."""
