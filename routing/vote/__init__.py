"""Reading answers as claims and merging them: clusters, weighted votes, judges, chairmen, samples."""
