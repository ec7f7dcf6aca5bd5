"""Reading shards, writing files atomically, run layout, completion records, manifests."""
