"""mmrec.crossdomain — filled in by later issues (see ../shared/PAPERS.md)."""
