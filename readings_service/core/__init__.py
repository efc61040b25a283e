"""The pure core: readings, time, partitions, clustering order, the merge, ranges; no I/O."""
