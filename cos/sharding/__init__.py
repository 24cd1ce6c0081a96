"""Entity sharding: routing, entities, shards, hosts and the coordinator."""
