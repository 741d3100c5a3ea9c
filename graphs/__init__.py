"""mmrec.graphs — filled in by later issues (see ../shared/PAPERS.md)."""
