"""Reports on runs: effectiveness-efficiency frontiers."""
